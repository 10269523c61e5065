"""End to end per objective: config -> train -> checkpoint -> resume -> final dir -> bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import typer
from typer.testing import CliRunner

from service.bundle import load_bundle
from training.runs.checkpoint import list_checkpoints
from training.runs.config import RunConfig, parse_config
from training.runs.lineage import read_lineage
from training.runs.loop import train


def cli_app() -> typer.Typer:
    from training.cli import register

    app = typer.Typer()
    register(app)
    return app


def make_config(base: Path, out: Path, objective: str, **overrides: Any) -> RunConfig:
    data: dict[str, Any] = {
        "objective": objective,
        "base_model": str(base),
        "output_dir": str(out),
        "corpus": {"format": "synthetic", "synthetic_notes": 60},
        "batch_size": 4,
        "max_steps": 2,
        "eval_every": 2,
        "eval_batches": 1,
        "checkpoint_every": 1,
        "num_threads": 1,
        "optim": {"lr": 1e-3, "warmup_steps": 0},
        "mlm": {"block_size": 32},
        "declutr": {"max_span": 12},
        "category": {"max_tokens": 32},
    }
    data.update(overrides)
    return parse_config(data)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("objective", "extra"),
    [
        ("mlm", {}),
        ("declutr", {}),
        ("category", {}),  # SupCon, the default
        ("category", {"category": {"loss": "linear", "weight": 0.1, "max_tokens": 32}}),
    ],
)
def test_objective_end_to_end(
    tiny_bert: Path, tmp_path: Path, objective: str, extra: dict[str, Any]
) -> None:
    out = tmp_path / "run"
    first = train(make_config(tiny_bert, out, objective, **extra), progress=False)
    assert first.steps == 2 and [p.name for p in list_checkpoints(out)] == [
        "step-000001",
        "step-000002",
    ]
    assert (out / "checkpoints" / "step-000002" / "config.yaml").is_file()

    resumed = train(
        make_config(tiny_bert, out, objective, max_steps=3, **extra), resume=True, progress=False
    )
    assert resumed.steps == 3
    assert resumed.initial_eval_loss == first.initial_eval_loss  # carried over, not re-measured

    lineage = read_lineage(resumed.final_dir)
    assert lineage is not None and lineage["objective"] == objective
    assert len(lineage["data_fingerprint"]) == 64
    # The CLI export reads lineage.json beside the model and puts it in the manifest.
    args = ["export", "--base", str(resumed.final_dir), "--out", str(tmp_path / "bundle")]
    args += ["--name", f"tiny-{objective}", "--max-tokens", "32"]
    result = CliRunner().invoke(cli_app(), args)
    assert result.exit_code == 0, result.output
    manifest = load_bundle(tmp_path / "bundle").manifest
    assert manifest.objective == objective and manifest.embedding_dim == 32
    assert manifest.data_fingerprint == lineage["data_fingerprint"]
    assert (
        manifest.training_config is not None and manifest.training_config["objective"] == objective
    )
    assert manifest.eval_metrics is not None and manifest.eval_metrics["steps"] == 3


def test_resume_reproduces_an_uninterrupted_run(tiny_bert: Path, tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import load_file

    config = make_config(tiny_bert, tmp_path / "run", "mlm", max_steps=3)
    straight = train(config, progress=False)
    expected = load_file(straight.final_dir / "model.safetensors")
    # Simulate a crash after step 2: the step-3 checkpoint and the final model never existed.
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step-000003")
    shutil.rmtree(straight.final_dir)
    resumed = train(config, resume=True, progress=False)
    got = load_file(resumed.final_dir / "model.safetensors")
    for name, tensor in expected.items():
        torch.testing.assert_close(tensor, got[name], atol=1e-6, rtol=0)  # same data/masks/dropout
    assert (
        json.loads((resumed.final_dir / "lineage.json").read_text())["eval_metrics"]["steps"] == 3
    )


def test_an_untrained_mlm_head_is_not_saved(tiny_bert: Path, tmp_path: Path) -> None:
    # A sentence-transformers-like base (no MLM head): DeCLUTR's "auto" MLM weight is 0, so
    # the head never trains; the final model must not carry its random weights as if trained,
    # or a category run started from it would switch the MLM term on.
    from transformers import AutoModel

    from training.runs.model import load_encoder

    bare = tmp_path / "bare"
    AutoModel.from_pretrained(tiny_bert).save_pretrained(bare)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_bert / name).is_file():
            (bare / name).write_bytes((tiny_bert / name).read_bytes())
    first = train(make_config(bare, tmp_path / "declutr", "declutr"), progress=False)
    assert first.mlm_weight == 0
    assert load_encoder(first.final_dir).fresh_head
    second = train(make_config(first.final_dir, tmp_path / "category", "category"), progress=False)
    assert second.mlm_weight == 0

    # A base whose MLM head is real keeps it (and the MLM term).
    mlm = train(make_config(tiny_bert, tmp_path / "mlm", "mlm"), progress=False)
    assert not load_encoder(mlm.final_dir).fresh_head
