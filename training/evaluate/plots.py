"""2-D pictures of an embedding space (t-SNE, cosine), coloured by a labelling."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


def project_2d(vectors: Vectors, seed: int = 0) -> npt.NDArray[np.float64]:
    """t-SNE with cosine distance (PCA for tiny sets, where t-SNE's perplexity cannot fit)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    n = len(vectors)
    if n < 10:
        return np.asarray(PCA(n_components=2, random_state=seed).fit_transform(vectors))
    tsne = TSNE(
        n_components=2,
        metric="cosine",
        init="pca",
        perplexity=min(30.0, (n - 1) / 3),
        random_state=seed,
    )
    return np.asarray(tsne.fit_transform(vectors))


def plot_projection(
    points: npt.NDArray[np.float64],
    colourings: dict[str, Sequence[str | None]],
    title: str,
    out: Path,
) -> Path:
    """One panel per labelling (e.g. note category, task label), side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(colourings), figsize=(7 * len(colourings), 6), squeeze=False)
    for ax, (name, labels) in zip(axes[0], colourings.items(), strict=True):
        values = np.asarray([lab if lab else "(none)" for lab in labels])
        names = sorted(set(values.tolist()))
        cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
        for i, lab in enumerate(names):
            mask = values == lab
            ax.scatter(points[mask, 0], points[mask, 1], s=8, color=cmap(i % cmap.N), label=lab)
        ax.set_title(f"{title}: by {name}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, markerscale=2, loc="best")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
