"""The optional note-category head of a bundle: a softmax layer over the note embedding.

Stored as `head.npz` (W [D, C] float32, b [C] float32) with the class names in the manifest's
`labels`; applied in numpy after the encoder, so /classify costs one embedding pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.bundle import Bundle, BundleError

HEAD_FILE = "head.npz"


@dataclass(frozen=True)
class CategoryHead:
    labels: tuple[str, ...]
    weight: npt.NDArray[np.float32]  # [D, C]
    bias: npt.NDArray[np.float32]  # [C]

    def probabilities(self, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Softmax class probabilities, [N, D] -> [N, C]."""
        logits = vectors @ self.weight + self.bias  # [N, C]
        logits -= logits.max(axis=1, keepdims=True)  # stable softmax
        exp = np.exp(logits)
        probs: npt.NDArray[np.float32] = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
        return probs


def load_head(bundle: Bundle) -> CategoryHead | None:
    """The bundle's head, or None when it has none; a malformed head is a bundle error."""
    if HEAD_FILE not in bundle.manifest.files:
        return None
    labels = bundle.manifest.labels
    path: Path = bundle.path / HEAD_FILE
    if not labels:
        raise BundleError(f"bundle {bundle.path} has {HEAD_FILE} but no labels in its manifest")
    try:
        with np.load(path, allow_pickle=False) as data:
            weight = np.asarray(data["W"], dtype=np.float32)
            bias = np.asarray(data["b"], dtype=np.float32)
    except (OSError, KeyError, ValueError) as exc:
        raise BundleError(f"bundle {bundle.path}: cannot read {HEAD_FILE} ({exc})") from None
    dim = bundle.manifest.embedding_dim
    if weight.shape != (dim, len(labels)) or bias.shape != (len(labels),):
        raise BundleError(
            f"bundle {bundle.path}: {HEAD_FILE} has W {weight.shape} and b {bias.shape}; "
            f"expected ({dim}, {len(labels)}) and ({len(labels)},) for "
            f"dim {dim} and {len(labels)} labels"
        )
    return CategoryHead(tuple(labels), weight, bias)
