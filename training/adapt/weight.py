"""Choose the mixing weight of the adapted model on the trust's held-out notes, label-free.

For each weight alpha, theta = (1 − alpha) · base + alpha · adapted (training/runs/interpolate)
is exported to a bundle and scored on the held-out notes (training/adapt/heldout.py): span →
note retrieval (in-domain) and neighbour agreement with the base (how far the space moved).
Every score is kept per note, so each candidate's gain over the base has a paired interval.

The rule (docs/results.md, "Choosing the mixing weight"): among the weights whose in-domain
gain over the base is *better* by the interval rule, take the smallest whose point gain reaches
`share` of the best point gain; no weight better than the base → the base itself (alpha 0).
The smallest such weight stays closest to the base — the general competence the held-out
notes cannot measure — for most of the in-domain gain the adaptation offers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.paired_intervals import ItemScores, Verdict, paired_difference
from training.adapt.heldout import SpanQueries, neighbour_agreement, note_mrr
from training.evaluate.models import ModelSource
from training.evaluate.suite.embeddings import ModelEmbedder

SHARE_OF_BEST = 0.9
SCORES_FILE = "weights.json"


@dataclass(frozen=True)
class WeightScore:
    alpha: float
    mrr: float  # span -> note retrieval, MRR@10
    gain: float  # mrr − the base's
    gain_ci: tuple[float, float]
    verdict: str  # better / level / worse than the base (the interval rule, margin 0)
    agreement: float  # mean neighbour agreement with the base
    bundle: str


@dataclass(frozen=True)
class WeightChoice:
    alpha: float
    reason: str
    scores: list[WeightScore]


def choose(scores: Sequence[WeightScore], share: float = SHARE_OF_BEST) -> WeightChoice:
    """The smallest weight with an interval-backed gain reaching `share` of the best gain."""
    better = [s for s in scores if s.verdict == Verdict.BETTER.value and s.alpha > 0]
    if not better:
        return WeightChoice(
            0.0, "no weight is better than the base on held-out notes", list(scores)
        )
    best = max(s.gain for s in better)
    chosen = min((s for s in better if s.gain >= share * best), key=lambda s: s.alpha)
    reason = (
        f"smallest weight whose held-out span-retrieval gain ({chosen.gain:+.4f} MRR@10, "
        f"95 % CI [{chosen.gain_ci[0]:+.4f}, {chosen.gain_ci[1]:+.4f}]) reaches "
        f"{share:.0%} of the best ({best:+.4f}); neighbour agreement with the base "
        f"{chosen.agreement:.3f}"
    )
    return WeightChoice(chosen.alpha, reason, list(scores))


class HeldOutScorer:
    """Embeds the held-out queries and documents with a bundle and scores it against the base."""

    def __init__(
        self, queries: SpanQueries, base_bundle: Path, cache_dir: Path, threads: int
    ) -> None:
        self.queries = queries
        self.cache_dir = cache_dir
        self.threads = threads
        self.base_bundle = base_bundle
        self.base_mrr, self.base_docs = self._embed(base_bundle)

    def base_score(self) -> WeightScore:
        """The base itself, as weight 0: the row every gain is measured from."""
        mrr = float(self.base_mrr.mean())
        return WeightScore(
            0.0, mrr, 0.0, (0.0, 0.0), Verdict.LEVEL.value, 1.0, str(self.base_bundle)
        )

    def _embed(self, bundle: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        embedder = ModelEmbedder(
            ModelSource(bundle.name, bundle), self.cache_dir, policy="chunk", threads=self.threads
        )
        qs = embedder.embed(self.queries.queries)
        docs = embedder.embed(self.queries.documents)
        return note_mrr(qs, docs, self.queries.owner), docs

    def score(self, alpha: float, bundle: Path) -> WeightScore:
        mrr, docs = self._embed(bundle)
        diff = paired_difference(
            ItemScores(mrr[None]), ItemScores(self.base_mrr[None]), key="held-out-spans"
        )
        return WeightScore(
            alpha=alpha,
            mrr=float(mrr.mean()),
            gain=diff.mean,
            gain_ci=(diff.ci_low, diff.ci_high),
            verdict=diff.verdict(0.0).value,
            agreement=float(neighbour_agreement(docs, self.base_docs).mean()),
            bundle=str(bundle),
        )


def score_weights(
    alphas: Sequence[float],
    bundle_for: Callable[[float], Path],
    scorer: HeldOutScorer,
    work_dir: Path,
    progress: Callable[[str], None],
) -> list[WeightScore]:
    """Score every weight, reusing what a stopped run already scored (weights.json)."""
    path = work_dir / SCORES_FILE
    done: dict[float, WeightScore] = {}
    if path.is_file():
        for row in json.loads(path.read_text(encoding="utf-8")):
            row["gain_ci"] = tuple(row["gain_ci"])
            done[float(row["alpha"])] = WeightScore(**row)
    alphas = [a for a in alphas if a > 0]
    for alpha in alphas:
        if alpha not in done:
            done[alpha] = scorer.score(alpha, bundle_for(alpha))
            path.write_text(json.dumps([asdict(s) for s in done.values()], indent=2) + "\n")
        s = done[alpha]
        progress(
            f"alpha {alpha:g}: span MRR@10 {s.mrr:.4f} ({s.gain:+.4f} "
            f"[{s.gain_ci[0]:+.4f}, {s.gain_ci[1]:+.4f}], {s.verdict}), "
            f"neighbour agreement {s.agreement:.3f}"
        )
    return [scorer.base_score(), *(done[a] for a in alphas)]
