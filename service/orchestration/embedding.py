"""Embedding and classifying notes with the model serving now (/embed, /classify, /v1/embeddings).

Each request takes the serving version once, so a promotion during the request cannot pair one
model's encoder with another's note-category head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.bundle import Manifest
from service.errors import NoCategoryHead
from service.inference.config import LongNotePolicy
from service.inference.engine import EmbeddingEngine
from service.inference.head import CategoryHead
from service.inference.tokenize import TokenizedNote
from service.inference.windows import Vectors


@dataclass(frozen=True)
class Categories:
    """A note-category head's answer: probabilities [N, C] over `labels`."""

    labels: tuple[str, ...]
    probabilities: npt.NDArray[np.float32]


@dataclass(frozen=True)
class Embedded:
    vectors: Vectors  # [N, D], unit length
    notes: list[TokenizedNote]
    manifest: Manifest  # the model version that embedded them
    categories: Categories | None = None

    @property
    def tokens(self) -> int:
        """Content tokens embedded (special tokens excluded), over every note."""
        return sum(note.tokens for note in self.notes)


class Embedder:
    def __init__(self, engine: EmbeddingEngine) -> None:
        self._engine = engine

    @property
    def manifest(self) -> Manifest:
        """The serving model's manifest."""
        return self._engine.manifest

    @property
    def providers(self) -> list[str]:
        """What runs the serving model's graph (e.g. OpenVINO-CPU-bf16)."""
        return list(self._engine.serving().providers)

    async def embed(
        self, texts: list[str], policy: LongNotePolicy | None = None, *, categories: bool = False
    ) -> Embedded:
        """Embed notes; with `categories`, also apply the model's note-category head (409
        before any work when the serving model has none)."""
        runtime = self._engine.serving()
        head = _require_head(runtime.head, runtime.manifest.ref) if categories else None
        result = await self._engine.embed(texts, policy, runtime=runtime)
        found = (
            Categories(head.labels, head.probabilities(result.vectors))
            if head is not None
            else None
        )
        return Embedded(result.vectors, result.notes, result.manifest, found)


def _require_head(head: CategoryHead | None, model_ref: str) -> CategoryHead:
    if head is None:
        raise NoCategoryHead(
            f"model {model_ref} has no note-category head; promote a bundle built with "
            "`notespace head train`",
            param="model",
        )
    return head
