"""PNG plots of the paired differences to the baseline, with their confidence intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _rows(task: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(row label, diff) for every model × (N or metric) of one task."""
    rows = []
    for label, diffs in task["diffs"].items():
        if task["kind"] == "classification":
            for method, by_n in diffs.items():
                rows += [(f"{label} {method} N={n}", d) for n, d in by_n.items()]
        else:
            for direction, by_metric in diffs.items():
                suffix = "" if direction == task["name"] else " (reverse)"
                rows += [(f"{label} {m}{suffix}", d) for m, d in by_metric.items()]
    return rows


def plot_diffs(report: dict[str, Any], out_dir: Path) -> list[str]:
    """One panel per task: each model's difference to the baseline with its CI; [] when there
    is only the baseline."""
    tasks = [t for t in report["tasks"].values() if t["diffs"]]
    if not tasks:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heights = [max(1.5, 0.35 * len(_rows(t)) + 0.8) for t in tasks]
    fig, axes = plt.subplots(
        len(tasks), 1, figsize=(8, sum(heights)), squeeze=False, height_ratios=heights
    )
    for ax, task in zip(axes[:, 0], tasks, strict=True):
        rows = _rows(task)
        y = list(range(len(rows)))
        means = [d["mean"] for _, d in rows]
        low = [d["mean"] - d["ci_low"] for _, d in rows]
        high = [d["ci_high"] - d["mean"] for _, d in rows]
        colours = [
            "tab:green" if d["ci_low"] > 0 else "tab:red" if d["ci_high"] < 0 else "tab:grey"
            for _, d in rows
        ]
        for i, colour in enumerate(colours):  # errorbar takes one colour per call
            ax.errorbar(
                means[i], y[i], xerr=[[low[i]], [high[i]]], fmt="o", color=colour, capsize=3, ms=4
            )
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(y, [name for name, _ in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{task['name']}: difference to {report['baseline']} (95 % CI)", fontsize=9)
    fig.tight_layout()
    path = out_dir / "diffs.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path.name]
