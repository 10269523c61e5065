"""Frozen embeddings for the suite: the bundle's ONNX graph through the service runtime,
cached per (bundle, runtime, long-note policy, text) so tasks sharing texts embed them once."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from service.bundle import BundleError, Manifest, load_bundle
from service.inference.config import CpuPrecision, LongNotePolicy, Runtime, RuntimeConfig
from service.inference.runtime import ModelRuntime
from service.inference.runtime_choice import bundle_kind, choose_runtime
from training.evaluate.data import EvaluationError
from training.evaluate.models import ModelSource, Vectors, embed_texts

log = logging.getLogger(__name__)


def bundle_key(manifest: Manifest) -> str:
    """What decides a bundle's vectors: its files' hashes and windowing, not when it was
    exported (a checkpoint exported again reuses the cache)."""
    content = {
        "files": manifest.files,
        "max_tokens": manifest.max_tokens,
        "pooling": manifest.pooling,
        "normalized": manifest.normalized,
        "precision": manifest.precision,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class ModelEmbedder:
    """Embeds texts with one model; vectors already computed are read from the cache file."""

    source: ModelSource
    cache_dir: Path
    policy: LongNotePolicy
    threads: int
    runtime_setting: Runtime = "auto"
    cpu_precision: CpuPrecision = "auto"
    runtime_label: str = field(init=False, default="")  # e.g. openvino-bf16, onnxruntime-fp32
    providers: tuple[str, ...] = field(init=False, default=())
    embedded: int = field(init=False, default=0)  # texts embedded here, not read from the cache
    seconds: float = field(init=False, default=0.0)
    _config: RuntimeConfig | None = field(init=False, default=None)
    _runtime: ModelRuntime | None = field(init=False, default=None)
    _vectors: dict[str, Vectors] = field(init=False, default_factory=dict)
    _cache_file: Path | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        try:
            bundle = load_bundle(self.source.bundle_dir)
        except BundleError as exc:
            raise EvaluationError(str(exc)) from exc
        self._config = RuntimeConfig(
            intra_op_threads=self.threads,
            runtime=self.runtime_setting,
            cpu_precision=self.cpu_precision,
        )
        choice = choose_runtime(self._config, bundle_kind(bundle.manifest))
        # The label says what computed the vectors (cache key and report), e.g. openvino-bf16.
        self.runtime_label = f"{choice.runtime}-{choice.precision}"
        key = f"{bundle_key(bundle.manifest)}-{self.runtime_label}-{self.policy}"
        self._cache_file = self.cache_dir / f"vectors-{key}.npz"
        if self._cache_file.is_file():
            with np.load(self._cache_file) as data:
                keys = data["keys"].tolist()
                vectors = data["vectors"].astype(np.float32)
            self._vectors = dict(zip(keys, vectors, strict=True))

    def _load_runtime(self) -> ModelRuntime:
        if self._runtime is None:
            assert self._config is not None
            bundle = load_bundle(self.source.bundle_dir)
            self._runtime = ModelRuntime.load(bundle, self._config)
            self.providers = self._runtime.providers
        return self._runtime

    def embed(self, texts: Sequence[str]) -> Vectors:
        """[len(texts), D] unit vectors, in the order given."""
        keys = [text_digest(t) for t in texts]
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in self._vectors:
                missing.setdefault(key, text)
        if missing:
            started = time.perf_counter()
            runtime = self._load_runtime()
            new = embed_texts(runtime, list(missing.values()), policy=self.policy)
            self._vectors.update(zip(missing, new, strict=True))
            self.embedded += len(missing)
            self.seconds += time.perf_counter() - started
            self._save()
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._vectors[k] for k in keys]).astype(np.float32)

    def _save(self) -> None:
        assert self._cache_file is not None
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        keys = np.asarray(list(self._vectors), dtype="U64")
        vectors = np.stack(list(self._vectors.values())).astype(np.float32)
        # Write then rename: a run killed mid-save leaves the previous cache intact.
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".npz")
        os.close(fd)
        with open(tmp, "wb") as handle:
            np.savez(handle, keys=keys, vectors=vectors)
        os.replace(tmp, self._cache_file)
