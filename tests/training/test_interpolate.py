"""Weight-space interpolation (WiSE-FT) of an adapted encoder with its base."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from training.errors import TrainingConfigError
from training.runs.interpolate import interpolate, mix_state
from training.runs.lineage import read_lineage, write_lineage
from training.runs.model import load_encoder


def test_mix_state_is_the_convex_combination() -> None:
    base = {"w": torch.tensor([0.0, 2.0]), "ids": torch.tensor([0, 1])}
    adapted = {"w": torch.tensor([4.0, 6.0]), "ids": torch.tensor([0, 1])}
    mixed = mix_state(base, adapted, 0.25)
    torch.testing.assert_close(mixed["w"], torch.tensor([1.0, 3.0]))  # exact in fp32
    assert torch.equal(mixed["ids"], adapted["ids"])  # integer buffers are copied, not mixed
    for alpha, expected in ((0.0, base["w"]), (1.0, adapted["w"])):
        assert torch.equal(mix_state(base, adapted, alpha)["w"], expected)


def test_mix_state_refuses_other_architectures_and_bad_alpha() -> None:
    with pytest.raises(TrainingConfigError, match="shape"):
        mix_state({"w": torch.zeros(2)}, {"w": torch.zeros(3)}, 0.5)
    with pytest.raises(TrainingConfigError, match="differ"):
        mix_state({"w": torch.zeros(2)}, {"v": torch.zeros(2)}, 0.5)
    with pytest.raises(TrainingConfigError, match="alpha"):
        mix_state({"w": torch.zeros(2)}, {"w": torch.zeros(2)}, 1.5)


def _perturbed_copy(source: Path, out: Path) -> Path:
    model = load_encoder(source)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)
    model.model.save_pretrained(out)
    model.tokenizer.save_pretrained(out)
    write_lineage(out, {"objective": "declutr", "training_config": {"objective": "declutr"}})
    return out


def test_interpolated_model_sits_between_its_parents(tiny_bert: Path, tmp_path: Path) -> None:
    adapted = _perturbed_copy(tiny_bert, tmp_path / "adapted")
    out = interpolate(tiny_bert, adapted, 0.5, tmp_path / "mixed")
    base_w = load_encoder(tiny_bert).encoder.state_dict()
    adapted_w = load_encoder(adapted).encoder.state_dict()
    mixed_w = load_encoder(out).encoder.state_dict()
    name = next(k for k, v in base_w.items() if v.is_floating_point() and v.ndim == 2)
    torch.testing.assert_close(mixed_w[name], (base_w[name] + adapted_w[name]) / 2)
    lineage = read_lineage(out)
    assert lineage is not None
    assert lineage["training_config"]["interpolation"]["alpha"] == 0.5
    with pytest.raises(TrainingConfigError, match="exists"):
        interpolate(tiny_bert, adapted, 0.5, out)  # never overwrites a model


def test_cli_interpolate_writes_a_model_export_can_read(tiny_bert: Path, tmp_path: Path) -> None:
    import typer

    from training.cli import register

    app = typer.Typer()
    register(app)
    adapted = _perturbed_copy(tiny_bert, tmp_path / "adapted")
    args = ["train", "interpolate", "--model", str(adapted), "--base", str(tiny_bert)]
    result = CliRunner().invoke(app, [*args, "--alpha", "0.3", "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "config.json").is_file()
    missing = CliRunner().invoke(
        app,
        [
            "train",
            "interpolate",
            "--model",
            str(adapted),
            "--alpha",
            "0.3",
            "--out",
            str(tmp_path / "n"),
        ],
    )
    assert missing.exit_code == 2 and "config.yaml" in missing.output  # no base to mix with


def test_pick_alpha_takes_the_best_alpha_that_loses_nowhere() -> None:
    from training.runs.interpolate import pick_alpha

    table = {
        0.5: {"in-domain": 0.02, "other": 0.0},
        0.75: {"in-domain": 0.05, "other": -0.004},  # best mean, loses within the margin
        1.0: {"in-domain": 0.09, "other": -0.02},  # loses too much on "other"
    }
    assert pick_alpha(table, max_drop=0.005).alpha == 0.75
    tie = {0.25: {"a": 0.01}, 0.5: {"a": 0.01}}
    assert pick_alpha(tie, max_drop=0.005).alpha == 0.25  # closer to the base on a tie
    hopeless = pick_alpha({0.5: {"a": -0.1}, 1.0: {"a": -0.2}}, max_drop=0.005)
    assert hopeless.alpha == 0.0 and "every alpha" in hopeless.reason  # keep the base
