"""docs/quickstart.md, executed: a trust's CSV (its own column names) to a promoted adapted model
answering /embed, /search and /classify. Each step is the documented command, with the tiny
model as the base and a handful of training steps so it runs in CI."""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from service.cli import app as service_cli
from tests.conftest import LiveServer, make_settings, migrated_sqlite_url
from tests.support.tiny_model import build_tiny_encoder
from training.data.synthetic import synthetic_notes
from training.export import export_bundle

pytestmark = pytest.mark.slow

# The trust's export: its own column names, not notespace's.
COLUMNS = ["doc_id", "body", "specialty", "patient"]
# The quickstart's `adapt`, with a recipe small enough for CI (the default trains ~10 minutes).
TINY_RECIPE = """\
objective: declutr
max_steps: 3
eval_every: 3
eval_batches: 1
checkpoint_every: 3
num_threads: 1
batch_size: 4
mixed_precision: false
declutr: {num_anchors: 2, num_positives: 1, min_span: 4, max_span: 16, positive_mode: disjoint}
distill: {weight: 1.0}
"""


def write_trust_csv(path: Path, count: int = 150) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for note in synthetic_notes(count, seed=3):
            writer.writerow([note.note_id, note.text, note.category, note.group])
    return path


def read_trust_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def training_cli() -> typer.Typer:
    from training.cli import register

    app = typer.Typer()
    register(app)
    return app


def run(app: typer.Typer, *args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture()
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """One trust install: its database and index folder, as NOTESPACE_* in the environment
    (the CLI reads them there, as on a server)."""
    monkeypatch.setenv("NOTESPACE_DATABASE_URL", migrated_sqlite_url())
    monkeypatch.setenv("NOTESPACE_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_from_a_trust_csv_to_a_promoted_adapted_model(workspace: Path) -> None:
    notes_csv = write_trust_csv(workspace / "notes.csv")
    rows = read_trust_csv(notes_csv)
    categories = {row["specialty"] for row in rows}

    # 1. The base model, exported as version 1 of the trust's model name, served.
    base = build_tiny_encoder(
        workspace / "base",
        corpus=[row["body"] for row in rows],
        vocab_size=400,
        masked_lm=True,
        model_max_length=128,
    )
    export_bundle(base, workspace / "bundles/trust-notes-1", name="trust-notes", max_tokens=32)
    settings = make_settings(
        workspace / "bundles/trust-notes-1",
        database_url=os.environ["NOTESPACE_DATABASE_URL"],
        index_dir=workspace / "index",
        registry_poll_s=0.2,
        warmup=False,
    )
    with LiveServer(settings) as live, live.client(timeout=60) as client:
        # 2. The trust's notes go into the service (the quickstart's loader: POST /notes).
        for start in range(0, len(rows), 50):
            batch = rows[start : start + 50]
            response = client.post(
                "/notes",
                json={
                    "notes": [
                        {
                            "id": row["doc_id"],
                            "text": row["body"],
                            "category": row["specialty"],
                            "metadata": {"patient": row["patient"]},
                        }
                        for row in batch
                    ]
                },
            )
            assert response.status_code == 200, response.text

        # 3. Adapt on the same CSV through its own column names, register as version 2,
        # with the category column fitting the served head.
        (workspace / "tiny-recipe.yaml").write_text(TINY_RECIPE)
        training = training_cli()
        out = run(
            training,
            *("adapt", "notes.csv", "--text-column", "body", "--id-column", "doc_id"),
            *("--group-column", "patient", "--category-column", "specialty"),
            *("--out", "bundles/trust-notes-2", "--name", "trust-notes", "--version", "2"),
            "--register",
            *("--recipe", "tiny-recipe.yaml", "--base", str(base), "--alpha", "0.5"),
            *("--threads", "1", "--no-progress"),
        )
        assert "registered trust-notes@2" in out
        assert (workspace / "runs/adapt/trust-notes/adaptation.md").is_file()

        # 6. A promotion waits for the version's index to cover the stored notes ...
        refused = CliRunner().invoke(service_cli, ["models", "promote", "trust-notes@2"])
        assert refused.exit_code == 1 and "notespace index rebuild" in refused.output
        # ... so build it (beside the running service), then 7. promote.
        out = run(service_cli, "index", "rebuild", "--model", "trust-notes@2")
        assert f"index holds {len(rows)} of {len(rows)} notes" in out
        out = run(service_cli, "models", "promote", "trust-notes@2", "--by", "j.smith")
        assert "trust-notes@2 is active" in out and "promotion check" in out
        listed = json.loads(run(service_cli, "models", "list", "--json"))
        assert [m["ref"] for m in listed if m["serving"]] == ["trust-notes@2"]

        # 8. The running service picks the promotion up and serves it.
        deadline = time.monotonic() + 60
        while client.get("/info").json()["model"]["version"] != "2":
            assert time.monotonic() < deadline, "the service did not switch to the promotion"
            time.sleep(0.2)
        embedded = client.post("/embed", json={"notes": [rows[0]["body"]]}).json()
        assert embedded["model"] == {"name": "trust-notes", "version": "2"}
        assert embedded["usage"]["tokens"] > 0
        found = client.post("/search", json={"query": rows[0]["body"], "k": 5}).json()
        assert found["model"]["version"] == "2"
        assert found["results"][0]["id"] == rows[0]["doc_id"]  # the note itself, first
        assert found["results"][0]["metadata"] == {"patient": rows[0]["patient"]}
        classified = client.post("/classify", json={"notes": [rows[1]["body"]]}).json()
        assert classified["data"][0]["category"] in categories
        assert set(classified["labels"]) <= categories
