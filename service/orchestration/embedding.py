"""Embedding and classifying notes with the model serving now (/embed, /classify, /v1/embeddings).

Each request takes the serving version once, so a promotion during the request cannot pair one
model's encoder with another's note-category head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.bundle import Manifest
from service.errors import BadRequest, NoCategoryHead, NotFound
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
        """Content tokens embedded (special tokens excluded; a truncated note counts what was
        kept), over every note: the usage reported and charged to the key's quota."""
        return sum(note.embedded_tokens for note in self.notes)


class Embedder:
    def __init__(self, engine: EmbeddingEngine, aliases: Sequence[str] = ()) -> None:
        self._engine = engine
        self._aliases = tuple(aliases)

    @property
    def manifest(self) -> Manifest:
        """The serving model's manifest."""
        return self._engine.manifest

    def model_names(self) -> list[str]:
        """Every name a client may call the serving model by: its name, NAME@VERSION, and the
        configured aliases (NOTESPACE_MODEL_ALIASES)."""
        manifest = self.manifest
        return list(dict.fromkeys((manifest.name, manifest.ref, *self._aliases)))

    def require_model(self, name: str) -> Manifest:
        """The serving model's manifest if `name` is one of its names, else 404."""
        manifest = self.manifest
        if name not in self.model_names():
            raise NotFound(
                f"model not served here; this service serves {manifest.ref} "
                f"(as {', '.join(self.model_names())})",
                param="model",
            )
        return manifest

    def require_dimensions(self, dimensions: int | None) -> None:
        """OpenAI's `dimensions`: served when it is the model's own (its vectors cannot be
        shortened: it was not trained for shorter ones), else a 400 saying so."""
        dim = self.manifest.embedding_dim
        if dimensions is not None and dimensions != dim:
            raise BadRequest(
                f"dimensions {dimensions} is not available: this model gives {dim}-dimensional "
                f"vectors only; omit dimensions or send {dim}",
                param="dimensions",
            )

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
