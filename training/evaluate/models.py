"""Resolve the models to evaluate and embed notes with the ONNX graph the service serves."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.bundle import MANIFEST, Bundle, BundleError, load_bundle
from service.inference.config import LongNotePolicy, RuntimeConfig
from service.inference.runtime import ModelRuntime
from training.evaluate.data import EvaluationError

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]
RegistryFactory = Callable[[], Any]  # () -> service.registry.models.ModelRegistry


@dataclass(frozen=True)
class ModelSource:
    """One model under evaluation: its frozen path is always an ONNX bundle; fine-tuning
    needs the Hugging Face checkpoint (absent for a bundle given on its own)."""

    label: str  # column name in the report
    bundle_dir: Path
    checkpoint: Path | None = None
    registry_ref: str | None = None  # NAME@VERSION when the model is a registered version


def _is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file() and not (path / MANIFEST).is_file()


def resolve_model(
    spec: str,
    work_dir: Path,
    *,
    registry: RegistryFactory | None = None,
    max_tokens: int | None = None,
) -> ModelSource:
    """`[LABEL=]TARGET`: TARGET is a bundle dir, a Hugging Face checkpoint dir (exported to a
    bundle under `work_dir` first), `base` (all-MiniLM-L6-v2) or a registered NAME@VERSION."""
    label, sep, target = spec.partition("=")
    if not sep:
        label, target = "", spec
    path = Path(target)
    if target == "base" or path.is_dir():
        from training.export import ExportError, default_base_dir, export_bundle

        checkpoint = default_base_dir() if target == "base" else path
        if target != "base" and (path / MANIFEST).is_file():
            try:
                bundle = load_bundle(path)
            except BundleError as exc:
                raise EvaluationError(str(exc)) from exc
            return ModelSource(label or bundle.manifest.ref, path, None)
        if not _is_checkpoint(checkpoint):
            raise EvaluationError(
                f"{target}: neither a model bundle (manifest.json) nor a Hugging Face "
                "checkpoint (config.json)"
            )
        name = label or (checkpoint.parent.name if checkpoint.name == "final" else checkpoint.name)
        if target == "base":
            name = label or "all-MiniLM-L6-v2"
        key = hashlib.sha256(f"{checkpoint.resolve()}:{max_tokens}".encode()).hexdigest()[:10]
        out = work_dir / "bundles" / f"{_slug(name)}-{key}"
        if not (out / MANIFEST).is_file():
            log.info("exporting %s to %s", checkpoint, out)
            try:
                export_bundle(
                    None if target == "base" else checkpoint,
                    out,
                    name=_slug(name),
                    version="eval",
                    max_tokens=max_tokens,
                    overwrite=True,
                )
            except ExportError as exc:
                raise EvaluationError(f"{target}: {exc}") from exc
        return ModelSource(name, out, checkpoint)
    if "@" in target and registry is not None:
        from service.errors import NotFound

        try:
            row = registry().get(target)
        except NotFound as exc:
            raise EvaluationError(f"unknown model {target!r}: {exc.message}") from None
        return ModelSource(label or row.ref, Path(row.bundle_path), None, row.ref)
    raise EvaluationError(
        f"unknown model {target!r}: not a directory, not 'base', and not a registered NAME@VERSION"
    )


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name).strip("-.") or "model"


def load_runtime(bundle_dir: Path, threads: int) -> ModelRuntime:
    try:
        bundle: Bundle = load_bundle(bundle_dir)
    except BundleError as exc:
        raise EvaluationError(str(exc)) from exc
    return ModelRuntime.load(bundle, RuntimeConfig(intra_op_threads=threads))


def embed_texts(
    runtime: ModelRuntime,
    texts: Sequence[str],
    *,
    policy: LongNotePolicy = "chunk",
    chunk_notes: int = 64,
    max_batch_tokens: int = 8192,
) -> Vectors:
    """Frozen embeddings from the bundle's ONNX graph, exactly as the service computes them."""
    parts = [
        runtime.embed_sync(list(texts[i : i + chunk_notes]), policy, max_batch_tokens)
        for i in range(0, len(texts), chunk_notes)
    ]
    if not parts:
        return np.zeros((0, runtime.manifest.embedding_dim), dtype=np.float32)
    vectors: Vectors = np.concatenate(parts).astype(np.float32)
    return vectors


def cached_embeddings(
    source: ModelSource,
    note_ids: Sequence[str],
    texts: Sequence[str],
    cache_dir: Path,
    *,
    policy: LongNotePolicy,
    threads: int,
) -> Vectors:
    """Embed once per (bundle, note set, policy); later runs of the report reuse the vectors."""
    bundle_key = hashlib.sha256((source.bundle_dir / MANIFEST).read_bytes()).hexdigest()[:12]
    ids_key = hashlib.sha256("\n".join(note_ids).encode()).hexdigest()[:12]
    path = cache_dir / f"emb-{_slug(source.label)}-{bundle_key}-{ids_key}-{policy}.npy"
    if path.is_file():
        cached: Vectors = np.load(path).astype(np.float32)
        return cached
    runtime = load_runtime(source.bundle_dir, threads)
    vectors = embed_texts(runtime, texts, policy=policy)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors
