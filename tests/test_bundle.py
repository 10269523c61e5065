"""The bundle contract: verified loading, clear refusals of tampered or incomplete bundles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from service.bundle import BundleError, load_bundle


@pytest.fixture()
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def test_load_verifies_and_reads_manifest(bundle_copy: Path) -> None:
    bundle = load_bundle(bundle_copy)
    m = bundle.manifest
    assert (m.name, m.version, m.pooling, m.max_tokens) == ("tiny", "1", "mean", 32)
    assert m.embedding_dim == 32
    assert set(m.files) == {"model.onnx", "tokenizer.json"}
    assert m.parity is not None and m.parity.min_cosine >= m.parity.tolerance_min_cosine


def test_tampered_model_is_refused(bundle_copy: Path) -> None:
    with (bundle_copy / "model.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=r"sha256 of model\.onnx"):
        load_bundle(bundle_copy)


def test_missing_file_is_refused(bundle_copy: Path) -> None:
    (bundle_copy / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match=r"incomplete: tokenizer\.json is missing"):
        load_bundle(bundle_copy)


def test_manifest_must_list_required_files(bundle_copy: Path) -> None:
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    del manifest["files"]["model.onnx"]
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"does not list model\.onnx"):
        load_bundle(bundle_copy)


def test_file_outside_bundle_is_refused(bundle_copy: Path) -> None:
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["files"]["../escape"] = "0" * 64
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="outside the bundle"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("content", ["{not json", '{"name": "x"}'])
def test_invalid_manifest_is_refused(bundle_copy: Path, content: str) -> None:
    (bundle_copy / "manifest.json").write_text(content)
    with pytest.raises(BundleError, match=r"invalid manifest\.json"):
        load_bundle(bundle_copy)


def test_missing_directory_and_manifest(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nope")
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        load_bundle(tmp_path)
