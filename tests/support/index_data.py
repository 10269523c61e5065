"""Test data for the index tests: clustered unit vectors and a brute-force oracle."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


def clustered_vectors(n: int, dim: int, *, seed: int, clusters: int = 50) -> Vectors:
    """Gaussian mixture on a low-rank subspace, normalised: neighbourhoods like text
    embeddings have, where uniform random vectors would have none."""
    rng = np.random.default_rng(seed)
    latent_dim = min(16, dim)
    centres = rng.standard_normal((clusters, latent_dim))
    latent = centres[rng.integers(0, clusters, n)] + 0.3 * rng.standard_normal((n, latent_dim))
    basis = np.random.default_rng(0).standard_normal((latent_dim, dim))  # shared across seeds
    x = latent @ basis + 0.05 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_force(
    queries: Vectors,
    vectors: Vectors,
    ids: npt.NDArray[np.int64],
    k: int,
    allowed_mask: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.int64]:
    scores = queries.astype(np.float64) @ vectors.astype(np.float64).T
    if allowed_mask is not None:
        scores[:, ~allowed_mask] = -np.inf
    return ids[np.argsort(-scores, axis=1, kind="stable")[:, :k]]


def recall(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True)]))
