"""Train the note-category head on frozen bundle embeddings and write a new bundle version."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from service.bundle import MANIFEST, Manifest, load_bundle, write_manifest
from service.inference.head import HEAD_FILE, CategoryHead, load_head
from training.evaluate.classifiers import LR_C_GRID
from training.evaluate.data import EvaluationError, LabelledNote
from training.evaluate.metrics import classification_scores
from training.evaluate.models import Vectors


@dataclass(frozen=True)
class HeadResult:
    bundle_dir: Path
    manifest: Manifest
    val_scores: dict[str, Any]
    test_scores: dict[str, Any] | None = None


def fit_softmax_head(
    x_train: Vectors,
    y_train: Sequence[str],
    x_val: Vectors,
    y_val: Sequence[str],
    *,
    c_grid: Sequence[float] = LR_C_GRID,
) -> tuple[list[str], Vectors, Vectors, dict[str, Any]]:
    """Multinomial logistic regression (C chosen on validation macro-F1) as W [D, C], b [C]."""
    labels = sorted(set(y_train))
    if len(labels) < 2:
        raise EvaluationError("a category head needs at least two categories in training")
    if x_train.shape[1] != x_val.shape[1]:
        raise EvaluationError(f"embedding dims differ: {x_train.shape[1]} vs {x_val.shape[1]}")
    best: tuple[float, float, LogisticRegression, dict[str, Any]] | None = None
    for c in c_grid:
        model = LogisticRegression(C=c, max_iter=3000)
        model.fit(x_train, y_train)
        scores = classification_scores(y_val, model.predict(x_val).tolist(), labels)
        if best is None or scores["macro_f1"] > best[0]:
            best = (scores["macro_f1"], c, model, scores)
    assert best is not None
    _, c, model, scores = best
    if list(model.classes_) != labels:
        raise EvaluationError("the fitted head's classes do not match the training labels")
    # sklearn's binary case keeps one row of coefficients: expand to two softmax columns.
    coef = np.asarray(model.coef_, dtype=np.float32)
    intercept = np.asarray(model.intercept_, dtype=np.float32)
    if len(labels) == 2:
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    return labels, coef.T.copy(), intercept, {"C": c, "validation": scores}


def build_head_bundle(
    bundle_dir: Path,
    out: Path,
    train: Sequence[LabelledNote],
    val: Sequence[LabelledNote],
    x_train: Vectors,
    x_val: Vectors,
    *,
    version: str | None = None,
    overwrite: bool = False,
    data_description: str = "",
    test: Sequence[LabelledNote] = (),
    x_test: Vectors | None = None,
) -> HeadResult:
    """Copy the bundle, add head.npz and labels, and re-write the manifest (new version).

    With held-out `test` notes (never used to fit or select the head) their scores go into the
    manifest beside the validation scores, so a reviewer sees an unbiased figure.
    """
    source = load_bundle(bundle_dir)
    if x_train.shape[1] != source.manifest.embedding_dim:
        raise EvaluationError(
            f"embeddings have dim {x_train.shape[1]}, bundle says {source.manifest.embedding_dim}"
        )
    labels, weight, bias, info = fit_softmax_head(
        x_train, [n.y for n in train], x_val, [n.y for n in val]
    )
    test_scores = None
    if test and x_test is not None:
        served = CategoryHead(tuple(labels), weight, bias)  # scored as /classify scores
        predicted = served.probabilities(x_test).argmax(axis=1)
        test_scores = classification_scores(
            [n.y for n in test], [labels[i] for i in predicted.tolist()], labels
        )
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise EvaluationError(f"output directory {out} is not empty (pass --overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)
    try:
        for name in source.manifest.files:
            if name != HEAD_FILE:
                shutil.copy2(source.path / name, staging / name)
        np.savez(staging / HEAD_FILE, W=weight, b=bias)
        old = source.manifest.model_dump(exclude={"files", "created_at", "labels", "version"})
        metrics = dict(old.pop("eval_metrics") or {})
        metrics["category_head"] = {
            "data": data_description,
            "train_notes": len(train),
            "val_notes": len(val),
            **info,
        }
        if test_scores is not None:
            metrics["category_head"].update(test_notes=len(test), test=test_scores)
        manifest = write_manifest(
            staging,
            **old,
            version=version or f"{source.manifest.version}+head",
            labels=labels,
            eval_metrics=metrics,
        )
        check = load_bundle(staging)  # the head must load the way the service loads it
        if load_head(check) is None:
            raise EvaluationError("the written bundle has no loadable head")
        if out.exists():
            shutil.rmtree(out)
        staging.replace(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    assert (out / MANIFEST).is_file()
    return HeadResult(out, manifest, info["validation"], test_scores)
