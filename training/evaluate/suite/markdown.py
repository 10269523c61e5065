"""report.md of a suite run: a summary of every task × model, then one section per task."""

from __future__ import annotations

from typing import Any

from training.evaluate.suite.summary import primary_diff

SPACE_KEYS = (
    ("silhouette_cosine", "silhouette (cos) ↑"),
    ("davies_bouldin", "Davies–Bouldin ↓"),
    ("cosine_gap", "within − between cos ↑"),
    ("alignment", "alignment ↓"),
    ("uniformity", "uniformity ↓"),
)


def _signed(x: float) -> str:
    return f"{x:+.3f}".replace("-", "−")


def diff_cell(diff: dict[str, Any] | None, *, draw_sd: bool = False) -> str:
    if not diff:
        return "–"
    text = f"{_signed(diff['mean'])} [{_signed(diff['ci_low'])}, {_signed(diff['ci_high'])}]"
    if draw_sd and diff.get("draw_sd") is not None:
        text += f" (draw sd {diff['draw_sd']:.3f})"
    return text


def _mean_sd(cell: dict[str, Any] | None, score: str = "macro_f1") -> str:
    if not cell:
        return "–"
    return f"{cell[score]['mean']:.3f} ± {cell[score]['sd']:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]


def _value(task: dict[str, Any], label: str) -> str:
    model = task["models"][label]
    if task["kind"] == "classification":
        n = task["primary_metric"].split("@")[1]
        return _mean_sd(model["frozen_lr"].get(n))
    return f"{model['metrics'][task['primary_metric']]:.3f}"


def _header(report: dict[str, Any]) -> list[str]:
    suite = report["suite"]
    ci = suite["definition"]["settings"]
    lines = [
        f"# Evaluation suite `{suite['name']}` ({report['split']} split)",
        "",
        suite["description"] or "",
        "",
        f"Fingerprint `{suite['fingerprint'][:16]}…` (suite definition, N, seeds and data file "
        f"hashes); evaluated {report['evaluated_at']}; {report.get('seconds', 0):.0f} s on "
        f"{report['threads']} thread(s). Baseline **{report['baseline']}**: every difference is "
        f"model − baseline on the same items, with a {ci['confidence']:.0%} confidence interval "
        f"from a paired bootstrap ({ci['bootstrap']} resamples of the scored items and of the "
        "few-shot draws, the same for both models; for a group of training seeds, of its seeds "
        "too: service/paired_intervals.py). Classification uses the same few-shot draws for "
        "every model (checked); the probe's C is chosen by cross-validation within each draw.",
        "",
    ]
    rows = [
        [label, m["runtime"], ", ".join(m["providers"]) or "–", m["registry_ref"] or "–"]
        for label, m in report["models"].items()
    ]
    lines += _table(["model", "runtime", "providers", "registry"], rows)
    if report["split"] == "val":
        lines += ["**Validation split**: for choosing settings; the test split was not used.", ""]
    return lines


def _summary(report: dict[str, Any]) -> list[str]:
    labels = list(report["models"])
    others = [m for m in labels if m != report["baseline"]]
    header = ["task", "primary metric", *labels, *(f"Δ {m} (CI)" for m in others)]
    rows = []
    for name, task in report["tasks"].items():
        rows.append(
            [
                name,
                task["primary_metric"],
                *(_value(task, m) for m in labels),
                *(diff_cell(primary_diff(task, m)) for m in others),
            ]
        )
    return ["## Summary (primary metric per task)", "", *_table(header, rows), *_groups(report)]


def _groups(report: dict[str, Any]) -> list[str]:
    """One row per task for each group of training seeds: its members' values, their mean and
    the paired difference with the seeds resampled."""
    lines: list[str] = []
    for name, group in report.get("groups", {}).items():
        members = group["members"]
        lines += [
            f"**{name}**: {len(members)} training seeds ({', '.join(members)}), "
            f"against {report['baseline']}",
            "",
        ]
        rows = [
            [
                task,
                cell["metric"],
                ", ".join(f"{v:.3f}" for v in cell["member_values"]),
                f"{cell['value']:.3f}",
                diff_cell(cell["diff"]),
            ]
            for task, cell in group["tasks"].items()
        ]
        lines += _table(["task", "primary metric", "per seed", "mean", "Δ (CI)"], rows)
    return lines


def _classification(task: dict[str, Any], baseline: str) -> list[str]:
    counts = task["counts"]
    lines = [
        f"## {task['name']} (classification)",
        "",
        task["protocol"],
        "",
        f"{len(task['classes'])} classes: "
        + ", ".join(task["classes"])
        + ". Items: "
        + "; ".join(f"{part} {sum(c.values())}" for part, c in counts.items())
        + ".",
        "",
    ]
    if task["dropped_classes"]:
        dropped = ", ".join(f"{c} ({why})" for c, why in task["dropped_classes"].items())
        lines += [f"Dropped classes: {dropped}.", ""]
    ns = task["ns"]
    models = task["models"]
    lines += [f"**Frozen encoder, LR probe: macro-F1 (mean ± sd over {task['seeds']} seeds)**", ""]
    lines += _table(
        ["model", *(f"N={n}" for n in ns)],
        [[m, *(_mean_sd(r["frozen_lr"].get(n)) for n in ns)] for m, r in models.items()],
    )
    lines += ["**Accuracy (mean ± sd)**", ""]
    lines += _table(
        ["model", *(f"N={n}" for n in ns)],
        [
            [m, *(_mean_sd(r["frozen_lr"].get(n), "accuracy") for n in ns)]
            for m, r in models.items()
        ],
    )
    diffs = task["diffs"]
    if diffs:
        lines += [
            f"**Paired difference to {baseline}: macro-F1, mean [95 % CI] (sd over draws)**",
            "",
        ]
        lines += _table(
            ["model", *(f"N={n}" for n in ns)],
            [
                [m, *(diff_cell(d.get("frozen_lr", {}).get(n), draw_sd=True) for n in ns)]
                for m, d in diffs.items()
            ],
        )
    lines += _finetune(task, baseline)
    lines += ["**Embedding space (scored items, by class)**", ""]
    lines += _table(
        ["model", *(t for _, t in SPACE_KEYS)],
        [
            [m, *((f"{r['space'][k]:.3f}" if r.get("space") else "–") for k, _ in SPACE_KEYS)]
            for m, r in models.items()
        ],
    )
    pictures = [(m, p) for m, r in models.items() for p in r.get("pictures", [])]
    lines += [f"![{m}]({p})" for m, p in pictures]
    return lines + ([""] if pictures else [])


def _finetune(task: dict[str, Any], baseline: str) -> list[str]:
    rows = []
    for m, r in task["models"].items():
        if "finetune_skipped" in r:
            rows.append([m, "–", "–", "–", "–", "–", r["finetune_skipped"]])
        for n, cell in r.get("finetune", {}).items():
            steps = [run["chosen"]["step"] for run in cell["runs"]]
            diff = task["diffs"].get(m, {}).get("finetune", {}).get(n)
            rows.append(
                [
                    m,
                    n,
                    _mean_sd(cell),
                    diff_cell(diff, draw_sd=True) if m != baseline else "–",
                    ", ".join(map(str, steps)),
                    f"{cell['stopped_early']} early / {cell['hit_cap']} at cap",
                    f"{cell['seconds_per_run']:.0f} s per run",
                ]
            )
    if not rows:
        return []
    header = ["model", "N", "macro-F1", f"Δ to {baseline}", "step chosen", "stopped", "time"]
    return [
        "**Fine-tuned encoder + paper head (early stopping on validation macro-F1)**",
        "",
        *_table(header, rows),
    ]


def _retrieval(task: dict[str, Any], baseline: str) -> list[str]:
    lines = [
        f"## {task['name']} (retrieval)",
        "",
        task["protocol"],
        "",
        f"Corpus {task['corpus']} documents; queries: validation {task['queries']['val']}, "
        f"test {task['queries']['test']} (exact cosine search).",
        "",
    ]
    directions = [(task["name"], task["metrics"], None)] + [
        (s["name"], s["metrics"], s) for s in task["secondary"]
    ]
    for name, metrics, secondary in directions:
        if secondary is not None:
            lines += [f"**Secondary: {name}** ({secondary['protocol']})", ""]

        def values(r: dict[str, Any], name: str = name) -> dict[str, float]:
            return dict(r["metrics"] if name == task["name"] else r["secondary"][name]["metrics"])

        lines += _table(
            ["model", *metrics],
            [[m, *(f"{values(r)[k]:.3f}" for k in metrics)] for m, r in task["models"].items()],
        )
        if task["diffs"]:
            lines += [f"Paired difference to {baseline}, mean [95 % CI]:", ""]
            lines += _table(
                ["model", *metrics],
                [[m, *(diff_cell(d[name][k]) for k in metrics)] for m, d in task["diffs"].items()],
            )
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    baseline = report["baseline"]
    lines = _header(report)
    if report["tasks"]:
        lines += _summary(report)
    for task in report["tasks"].values():
        lines += _classification(task, baseline) if task["kind"] == "classification" else []
        lines += _retrieval(task, baseline) if task["kind"] == "retrieval" else []
    timing = [
        [name, m, f"{r['seconds']['embedding']:.0f}", f"{r['seconds']['total']:.0f}"]
        for name, task in report["tasks"].items()
        for m, r in task["models"].items()
    ]
    lines += ["## Time", "", *_table(["task", "model", "embedding (s)", "total (s)"], timing)]
    for png in report.get("plots", []):
        lines += [f"![paired differences]({png})", ""]
    return "\n".join(lines)
