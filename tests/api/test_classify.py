"""The note-category head: built by `notespace head train`, served by /classify and /embed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from service.bundle import BundleError, load_bundle
from service.inference.head import HEAD_FILE, load_head
from service.registry.database import make_engine
from service.registry.models import ModelRegistry
from tests.conftest import LiveServer, make_settings, migrated_sqlite_url
from tests.training.evaluate.conftest import write_mtsamples
from training.cli import register


@pytest.fixture(scope="module")
def head_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = write_mtsamples(tmp_path_factory.mktemp("head-data") / "mtsamples.csv")
    out = tmp_path_factory.mktemp("head") / "tiny-head"
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(
        app,
        [
            *("head", "train", "--bundle", str(tiny_bundle), "--data", str(data)),
            *("--out", str(out), "--min-per-class", "2", "--threads", "1", "--overwrite"),
        ],
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def head_client(head_bundle: Path) -> Iterator[httpx.Client]:
    with LiveServer(make_settings(head_bundle)) as live, live.client() as c:
        yield c


def test_head_bundle_is_a_new_verified_version(head_bundle: Path, tiny_bundle: Path) -> None:
    bundle = load_bundle(head_bundle)
    m = bundle.manifest
    assert m.ref == "tiny@1+head"
    assert m.labels == ["consult_hp", "operative_note", "radiology"]
    assert HEAD_FILE in m.files  # the manifest hash covers the head
    head = load_head(bundle)
    assert head is not None and head.weight.shape == (32, 3)
    assert m.eval_metrics is not None and "category_head" in m.eval_metrics
    assert load_bundle(tiny_bundle).manifest.files.keys() <= m.files.keys()


def test_classify_returns_categories_from_one_embedding_pass(
    head_client: httpx.Client, head_bundle: Path
) -> None:
    notes = ["surgery operation incision sutures knee", {"id": "r1", "text": "ct scan mri normal"}]
    r = head_client.post("/classify", json={"notes": notes})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "tiny", "version": "1+head"}
    assert r.headers["x-notespace-model"] == "tiny@1+head"
    assert body["labels"] == ["consult_hp", "operative_note", "radiology"]
    head = load_head(load_bundle(head_bundle))
    assert head is not None
    vectors = np.asarray(
        [d["embedding"] for d in head_client.post("/embed", json={"notes": notes}).json()["data"]],
        dtype=np.float32,
    )
    expected = head.probabilities(vectors)
    for i, item in enumerate(body["data"]):
        probs = {p["category"]: p["probability"] for p in item["probabilities"]}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        got = np.asarray([probs[c] for c in head.labels])
        np.testing.assert_allclose(got, expected[i], atol=1e-5)  # same graph, fp32 noise
        assert item["category"] == head.labels[int(expected[i].argmax())]
        assert item["probability"] == pytest.approx(float(expected[i].max()), abs=1e-5)
    assert body["data"][1]["id"] == "r1"
    top = head_client.post("/classify", json={"notes": notes, "top_k": 1}).json()
    assert all(len(d["probabilities"]) == 1 for d in top["data"])


def test_embed_can_add_categories(head_client: httpx.Client) -> None:
    r = head_client.post("/embed", json={"notes": ["ct scan normal"], "categories": True})
    assert r.status_code == 200, r.text
    item = r.json()["data"][0]
    assert item["category"] in {"consult_hp", "operative_note", "radiology"}
    assert 0 < item["category_probability"] <= 1
    plain = head_client.post("/embed", json={"notes": ["ct scan normal"]}).json()["data"][0]
    assert plain.get("category") is None


def test_model_without_head_answers_409(client: httpx.Client) -> None:
    for path, body in (
        ("/classify", {"notes": ["chest pain"]}),
        ("/embed", {"notes": ["chest pain"], "categories": True}),
    ):
        r = client.post(path, json=body)
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["code"] == "no_category_head" and "tiny@1" in error["message"]
        assert "chest" not in r.text
    assert client.post("/classify", json={"notes": []}).status_code == 400


def test_tampered_or_mismatched_head_is_refused(head_bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(head_bundle, copy)
    np.savez(copy / HEAD_FILE, W=np.zeros((16, 3), np.float32), b=np.zeros(3, np.float32))
    with pytest.raises(BundleError, match=r"sha256 of head\.npz"):
        load_bundle(copy)
    # Re-hash it (as a careless tool would): the dims check still refuses it.
    from service.bundle import write_manifest

    fields = json.loads((copy / "manifest.json").read_text())
    fields.pop("files")
    write_manifest(copy, **fields)
    with pytest.raises(BundleError, match=r"expected \(32, 3\)"):
        load_head(load_bundle(copy))


def test_registry_stores_eval_metrics(head_bundle: Path) -> None:
    registry = ModelRegistry(make_engine(migrated_sqlite_url()))
    row = registry.register(load_bundle(head_bundle), "tester")
    assert row.eval_metrics is not None and "category_head" in row.eval_metrics
    registry.set_eval_metrics(row.ref, {"downstream": {"macro_f1": 0.5}})
    assert registry.get(row.ref).eval_metrics == {"downstream": {"macro_f1": 0.5}}


def test_head_train_scores_held_out_notes(tiny_bundle: Path, tmp_path: Path) -> None:
    from training.evaluate.data import load_notes

    data = write_mtsamples(tmp_path / "mtsamples.csv", per_pair=12)
    test_ids = [n.note_id for n in load_notes(data, "mtsamples")][::4]
    ids_file = tmp_path / "test_ids.txt"
    ids_file.write_text("\n".join(test_ids) + "\n")
    app = typer.Typer()
    register(app)
    out = tmp_path / "head"
    result = CliRunner().invoke(
        app,
        [
            *("head", "train", "--bundle", str(tiny_bundle), "--data", str(data)),
            *("--out", str(out), "--min-per-class", "2", "--threads", "1"),
            *("--test-ids", str(ids_file)),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"held-out test ({len(test_ids)} notes)" in result.output
    metrics = load_bundle(out).manifest.eval_metrics
    assert metrics is not None
    head_metrics = metrics["category_head"]
    assert head_metrics["test_notes"] == len(test_ids)
    assert 0.0 <= head_metrics["test"]["macro_f1"] <= 1.0
    assert set(head_metrics["test"]["per_class"]) >= {"operative_note", "radiology"}
