"""After `adapt`: register the bundle as staged (its report rides in the manifest's
eval_metrics["adaptation"]) and, with a suite, evaluate it against its base on the suite's test
split, storing the results on the registered version for the promotion guard."""

from __future__ import annotations

from pathlib import Path

import typer

from training.adapt.pipeline import AdaptResult
from training.adapt.plan import AdaptPlan
from training.adapt.report import write_report


def register_and_evaluate(
    plan: AdaptPlan,
    result: AdaptResult,
    *,
    register: bool,
    suite: str | None,
    data_root: Path | None,
    user: str,
) -> None:
    from service.bundle import load_bundle
    from service.cli.common import open_registry

    ref = None
    if register:
        row = open_registry().register(load_bundle(result.bundle), user)
        ref = row.ref
        typer.echo(f"registered {row.ref} (id {row.id}, {row.status})")
    if suite is None:
        return
    from training.evaluate.suite.markdown import diff_cell
    from training.evaluate.suite.runner import RunConfig, run_suite

    candidate = f"{plan.name}={ref or result.bundle}"
    report = run_suite(
        ["base", candidate],
        suite,
        RunConfig(
            data_root=data_root,
            threads=plan.threads,
            registry=open_registry if ref else None,
            progress=typer.echo,
        ),
        plan.work_dir / "suite",
        split="test",
    )
    rows = [
        f"| {task} | {cells['base']['value']:.3f} | {cells[plan.name]['value']:.3f} | "
        f"{diff_cell(cells[plan.name]['diff'])} |"
        for task, cells in report["summary"].items()
    ]
    result.report["suite"] = "\n".join(
        [
            f"Suite `{report['suite']['name']}`, test split, against the base (paired 95 % "
            f"intervals; full report: {plan.work_dir / 'suite' / 'report.md'}).",
            "",
            "| task | base | adapted | Δ [95 % CI] |",
            "|---|---|---|---|",
            *rows,
        ]
    )
    write_report(result.report, plan.work_dir)
