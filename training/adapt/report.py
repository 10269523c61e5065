"""The adaptation report: adaptation.json (everything), adaptation.md (for people) and
adaptation.png (the held-out gain and the neighbour agreement at each mixing weight)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPORT_JSON = "adaptation.json"
REPORT_MD = "adaptation.md"
REPORT_PNG = "adaptation.png"


def _signed(x: float) -> str:
    return f"{x:+.4f}".replace("-", "−")


def render_markdown(report: dict[str, Any]) -> str:
    data, training, weight = report["data"], report["training"], report["weight"]
    lines = [
        f"# Adaptation of {report['base_model']} → {report['model']}",
        "",
        f"Notes: `{report['notes_file']}`, {data['training_notes']} trained on, "
        f"{data['held_out_notes']} held out (split by {data['split_by']}; never trained on), "
        f"{data['rows_dropped']} rows dropped (empty or duplicate), {data['excluded']} excluded. "
        f"Recipe `{report['recipe']}`.",
        "",
        "## Training",
        "",
        f"{training['steps']} steps at {training['tokens_per_s']:.0f} tokens/s "
        f"({training['notes_per_s']:.2f} notes/s, {training['precision']}), "
        f"{training['seconds'] / 60:.1f} min; held-out loss {training['initial_eval_loss']:.4f} "
        f"→ {training['final_eval_loss']:.4f}; {100 * training['fraction_notes_used']:.1f} % "
        "of training notes long enough for spans.",
        "",
        "## Mixing weight (held-out notes, label-free)",
        "",
        "Span → note retrieval: up to four passages cut from each held-out note look for the "
        "rest of their note among all held-out notes (MRR@10, averaged per note); the gain "
        "over the base has a paired 95 % interval over the notes. Neighbour agreement: the "
        "share of each note's 10 nearest held-out notes that the base also puts there "
        "(1 = the base's space).",
        "",
        "| weight | span MRR@10 | gain [95 % CI] | vs base | neighbour agreement |",
        "|---|---|---|---|---|",
    ]
    for s in weight["scores"]:
        mark = " **chosen**" if s["alpha"] == weight["alpha"] else ""
        lines.append(
            f"| {s['alpha']:g}{mark} | {s['mrr']:.4f} | {_signed(s['gain'])} "
            f"[{_signed(s['gain_ci'][0])}, {_signed(s['gain_ci'][1])}] | {s['verdict']} | "
            f"{s['agreement']:.3f} |"
        )
    lines += ["", f"Chosen: **{weight['alpha']:g}** — {weight['reason']}.", ""]
    if report.get("head"):
        head = report["head"]
        lines += ["## Labels: the served category head", "", head["summary"] + ".", ""]
    if report.get("suite"):
        lines += ["## Evaluation suite", "", report["suite"], ""]
    lines += ["## Time per stage", "", "| stage | wall | tokens/s |", "|---|---|---|"]
    for stage in report["stages"]:
        rate = f"{stage['tokens_per_s']:.0f}" if stage.get("tokens_per_s") else "–"
        lines.append(f"| {stage['stage']} | {stage['seconds'] / 60:.1f} min | {rate} |")
    total = sum(s["seconds"] for s in report["stages"])
    lines += ["", f"Total {total / 60:.1f} min.", "", f"![weights]({REPORT_PNG})", ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = report["weight"]["scores"]
    alphas = [s["alpha"] for s in scores]
    gains = [s["gain"] for s in scores]
    low = [s["gain"] - s["gain_ci"][0] for s in scores]
    high = [s["gain_ci"][1] - s["gain"] for s in scores]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.errorbar(alphas, gains, yerr=[low, high], marker="o", capsize=3, label="span MRR@10 gain")
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(report["weight"]["alpha"], color="green", ls="--", lw=1, label="chosen")
    ax.set_xlabel("weight of the adapted model (0 = base)")
    ax.set_ylabel("gain over the base (95 % CI)")
    twin = ax.twinx()
    twin.plot(alphas, [s["agreement"] for s in scores], color="tab:orange", marker="s", lw=1)
    twin.set_ylabel("neighbour agreement with the base", color="tab:orange")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REPORT_JSON).write_text(json.dumps(report, indent=2, default=str) + "\n")
    plot(report, out_dir / REPORT_PNG)
    (out_dir / REPORT_MD).write_text(render_markdown(report))
