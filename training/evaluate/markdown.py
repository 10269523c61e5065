"""report.md of `notespace evaluate`: the computed report (training.evaluate.report) as tables."""

from __future__ import annotations

from typing import Any

from training.evaluate.metrics import SCORES

METHOD_TITLES = {
    "frozen_lr": "frozen encoder, logistic-regression probe",
    "frozen_head": "frozen encoder, paper head",
    "finetune": "fine-tuned encoder, paper head",
}


def _cell(summary: dict[str, Any] | None, score: str = "macro_f1") -> str:
    if not summary:
        return "–"
    return f"{summary[score]['mean']:.3f} ± {summary[score]['sd']:.3f}"


def render_markdown(report: dict[str, Any]) -> str:
    models: dict[str, Any] = report["models"]
    lines = [
        f"# Evaluation: {report['data']}",
        "",
        f"Task: **{report['task']}**, {len(report['classes'])} classes: "
        + ", ".join(report["classes"]),
        "",
        "Examples per split: "
        + "; ".join(f"{part} {sum(c.values())}" for part, c in report["counts"].items())
        + (
            ". Dropped (too few training examples): "
            + ", ".join(f"{c} ({k})" for c, k in report["dropped_classes"].items())
            if report["dropped_classes"]
            else ""
        ),
        "",
    ]
    methods = [m for m in METHOD_TITLES if any(m in r["classification"] for r in models.values())]
    for score in SCORES:
        lines += [f"## {score.replace('_', '-')} on the test split (mean ± sd over seeds)", ""]
        for method in methods:
            ns = sorted(
                {n for r in models.values() for n in r["classification"].get(method, {})},
                key=lambda k: (k == "all", int(k) if k.isdigit() else 0),
            )
            lines += [
                f"**{METHOD_TITLES[method]}**",
                "",
                "| model | " + " | ".join(f"N={n}" for n in ns) + " |",
                "|---|" + "---|" * len(ns),
            ]
            for label, r in models.items():
                cells = [_cell(r["classification"].get(method, {}).get(n), score) for n in ns]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += ["## Embedding space (held-out notes)", ""]
    keys = (
        ("silhouette_cosine", "silhouette (cos) ↑"),
        ("davies_bouldin", "Davies–Bouldin ↓"),
        ("calinski_harabasz", "Calinski–Harabasz ↑"),
        ("within_class_cosine", "within cos"),
        ("between_class_cosine", "between cos"),
        ("cosine_gap", "gap ↑"),
        ("alignment", "alignment ↓"),
        ("uniformity", "uniformity ↓"),
    )
    for by in ("category", "task_label"):
        lines += [
            f"**by {'note category' if by == 'category' else 'task label'}**",
            "",
            "| model | " + " | ".join(t for _, t in keys) + " |",
            "|---|" + "---|" * len(keys),
        ]
        for label, r in models.items():
            s = r["space"].get(by)
            cells = [f"{s[k]:.3f}" if s else "–" for k, _ in keys]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Time", "", "| model | embedding (s) | total (s) |", "|---|---|---|"]
    for label, r in models.items():
        lines.append(f"| {label} | {r['embed_seconds']:.0f} | {r['seconds']:.0f} |")
    lines.append("")
    pictures = [(label, p) for label, r in models.items() for p in r["pictures"]]
    if pictures:
        lines += ["## 2-D projections (t-SNE, cosine)", ""]
        lines += [f"![{label}]({p})" for label, p in pictures]
        lines.append("")
    return "\n".join(lines)
