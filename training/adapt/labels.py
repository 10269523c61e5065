"""With a category or label column: spend the labels on the served note-category head.

The encoder is adapted label-free; the labels then fit the softmax head `/classify` serves, on
the adapted bundle's frozen embeddings of the training notes (training/evaluate/head.py; C
chosen on 15 % of them). So the trust sees what its labels buy, the same head is fitted on the
*base* given the same labels, and both are scored on the held-out notes (never fitted on or
selected on): macro-F1 with a paired interval over those notes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from service.paired_intervals import ClassificationScores, paired_difference
from training.adapt.plan import AdaptPlan
from training.data.notes import Note
from training.evaluate.data import LabelledNote

MAX_HEAD_NOTES = 5000  # training notes embedded for the head (embedding cost)
# A value with fewer labelled training notes is left out of the head (and named in the report):
# a trust's label column is long-tailed, and a handful of notes cannot fit or check a class.
MIN_PER_CLASS = 8


def head_classes(fit: Sequence[LabelledNote], val: Sequence[LabelledNote]) -> tuple[list[str], int]:
    """The values the head can learn: MIN_PER_CLASS fitting notes and one for choosing C.
    Returns them sorted, and how many values were left out."""
    counts: dict[str, int] = {}
    for n in fit:
        counts[n.y] = counts.get(n.y, 0) + 1
    in_val = {n.y for n in val}
    kept = sorted(c for c, k in counts.items() if k >= MIN_PER_CLASS and c in in_val)
    every = set(counts) | in_val
    return kept, len(every) - len(kept)


def _labelled(notes: Sequence[Note], field: str) -> list[LabelledNote]:
    out = []
    for n in notes:
        y = getattr(n, field)
        if y:
            out.append(LabelledNote(n.note_id, n.text, y, n.category, n.label))
    return out


def add_label_head(
    plan: AdaptPlan, train: Sequence[Note], held_out: Sequence[Note]
) -> dict[str, Any]:
    """Fit the head on the adapted bundle (written into --out) and on the base, score both."""
    from training.evaluate.head import build_head_bundle
    from training.evaluate.models import ModelSource
    from training.evaluate.suite.embeddings import ModelEmbedder
    from training.evaluate.suite.hashsplit import stratified_hash_holdout

    field = "label" if plan.columns.label else "category"
    labelled = _labelled(train, field)[:MAX_HEAD_NOTES]
    # C is chosen on a slice of the training notes, so the held-out notes are only scored
    fit, val = stratified_hash_holdout(
        labelled, label=lambda n: n.y, key=lambda n: n.note_id, fraction=0.15
    )
    classes, left_out = head_classes(fit, val)
    fit = [n for n in fit if n.y in classes]
    val = [n for n in val if n.y in classes]
    scored = [n for n in _labelled(held_out, field) if n.y in classes]
    if len(classes) < 2 or len(scored) < 2:
        return {
            "field": field,
            "summary": (
                f"no head: fewer than two {field} values have {MIN_PER_CLASS} labelled "
                "training notes"
            ),
        }
    heads: dict[str, Any] = {}
    for who, bundle in (
        ("base", plan.work_dir / "weights" / "bundle-0"),
        ("adapted", plan.out),
    ):
        embedder = ModelEmbedder(
            ModelSource(who, bundle), plan.work_dir / "cache", "chunk", plan.threads
        )
        out = plan.out if who == "adapted" else plan.work_dir / "base-head"
        result = build_head_bundle(
            bundle,
            out,
            fit,
            val,
            embedder.embed([n.text for n in fit]),
            embedder.embed([n.text for n in val]),
            version=plan.version if who == "adapted" else None,
            overwrite=True,
            data_description=f"{plan.notes_file.name}: {field} column, training notes",
            test=scored,
            x_test=embedder.embed([n.text for n in scored]),
        )
        heads[who] = result
    labels = sorted(classes)
    index = {c: i for i, c in enumerate(labels)}
    y = np.asarray([index[n.y] for n in scored], dtype=np.int64)

    def predictions(who: str) -> ClassificationScores:
        from service.bundle import load_bundle
        from service.inference.head import load_head

        head = load_head(load_bundle(heads[who].bundle_dir))
        assert head is not None
        embedder = ModelEmbedder(
            ModelSource(who, heads[who].bundle_dir), plan.work_dir / "cache", "chunk", plan.threads
        )
        probs = head.probabilities(embedder.embed([n.text for n in scored]))
        pred = [index[head.labels[i]] for i in probs.argmax(axis=1).tolist()]
        return ClassificationScores(y, np.asarray([[pred]], dtype=np.int64), len(labels))

    diff = paired_difference(predictions("adapted"), predictions("base"), key="label-head")
    base_f1 = heads["base"].test_scores["macro_f1"]
    adapted_f1 = heads["adapted"].test_scores["macro_f1"]
    return {
        "field": field,
        "classes": labels,
        "classes_left_out": left_out,
        "fit_notes": len(fit),
        "held_out_notes": len(scored),
        "base_macro_f1": base_f1,
        "adapted_macro_f1": adapted_f1,
        "diff": diff.as_dict(),
        "summary": (
            f"{field} head on {len(fit)} training notes, {len(labels)} classes "
            f"({left_out} with fewer than {MIN_PER_CLASS} notes left out), "
            f"held-out macro-F1 {adapted_f1:.3f} "
            f"(the base given the same labels: {base_f1:.3f}; difference {diff.mean:+.3f} "
            f"[{diff.ci_low:+.3f}, {diff.ci_high:+.3f}])"
        ),
    }
