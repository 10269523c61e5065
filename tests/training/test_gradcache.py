"""The gradient cache gives the loss and gradients of one pass over the whole batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from training.data.synthetic import synthetic_notes
from training.runs.batches import DeclutrBatcher, SpecialIds, tokenize
from training.runs.config import RunConfig, parse_config
from training.runs.gradcache import RandomState
from training.runs.model import EncoderWithHead, frozen_copy, load_encoder
from training.runs.steps import StepModels, declutr_backward_cached, declutr_loss_one_pass


def _config(tmp_path: Path, **declutr: Any) -> RunConfig:
    return parse_config(
        {
            "objective": "declutr",
            "output_dir": str(tmp_path),
            "corpus": {"format": "synthetic"},
            "declutr": {"max_span": 12, **declutr},
            "distill": {"weight": 0.5},
        }
    )


def _grads(model: EncoderWithHead) -> dict[str, torch.Tensor]:
    return {
        name: p.grad.clone() for name, p in model.model.named_parameters() if p.grad is not None
    }


@pytest.mark.parametrize("mlm_weight", [0.0, 1.0])
def test_cached_backward_equals_one_pass(
    tiny_bert: Path, tmp_path: Path, mlm_weight: float
) -> None:
    torch.manual_seed(0)
    model = load_encoder(tiny_bert)
    model.model.eval()  # no dropout: both paths must then agree exactly (up to fp32 rounding)
    config = _config(tmp_path, chunk_size=3, mlm_weight=mlm_weight)
    special = SpecialIds.of(model.tokenizer)
    ids = tokenize(model.tokenizer, synthetic_notes(20, seed=3))
    batcher = DeclutrBatcher(ids, special, config.declutr, 0.15 if mlm_weight else 0.0)
    batch = batcher.build(list(range(8)), torch.Generator().manual_seed(1))
    models = StepModels(model, config, mlm_weight, teacher=frozen_copy(model.encoder))
    # a perturbed student, so the distillation term has a gradient too
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(0.01 * torch.randn_like(p))

    loss, parts = declutr_loss_one_pass(models, batch)
    (0.5 * loss).backward()
    expected = _grads(model)
    model.model.zero_grad(set_to_none=True)

    cached_loss, cached_parts = declutr_backward_cached(
        models, batch, lambda t: 0.5 * t, torch.enable_grad
    )
    got = _grads(model)
    assert cached_loss == pytest.approx(float(loss.detach()), rel=1e-5)
    assert cached_parts.keys() == parts.keys()
    for key, value in parts.items():
        assert cached_parts[key] == pytest.approx(value, rel=1e-5, abs=1e-7)
    assert got.keys() == expected.keys() and expected
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, atol=1e-6, rtol=1e-4, msg=name)


def test_random_state_replays_dropout() -> None:
    dropout = torch.nn.Dropout(0.5)
    x = torch.ones(100)
    state = RandomState()
    first = dropout(x)
    dropout(x)  # the generator moves on
    with state.replay():
        again = dropout(x)
    assert torch.equal(first, again)
    assert not torch.equal(first, dropout(x))  # replay left the outer generator where it was


def test_fresh_mlm_head_is_detected(tiny_bert: Path, tmp_path: Path) -> None:
    from transformers import AutoModel

    assert not load_encoder(tiny_bert).fresh_head  # saved as BertForMaskedLM
    bare = tmp_path / "bare"
    AutoModel.from_pretrained(tiny_bert).save_pretrained(bare)  # encoder only, no MLM head
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_bert / name).is_file():
            (bare / name).write_bytes((tiny_bert / name).read_bytes())
    assert load_encoder(bare).fresh_head


def test_length_sorted_passes_equal_one_padded_pass(tiny_bert: Path) -> None:
    """encode_by_length gives one padded pass's embeddings, MLM rows and gradients, in the
    rows' own order, with each pass trimmed to its longest sequence."""
    from training.objectives.pooling import mean_pool
    from training.runs.batches import pad
    from training.runs.steps import encode_by_length

    torch.manual_seed(0)
    model = load_encoder(tiny_bert)
    model.model.eval()
    lengths = [3, 17, 5, 40, 9, 2, 33, 12]
    ids, mask = pad([[5 + (i * 7 + j) % 50 for j in range(n)] for i, n in enumerate(lengths)], 0)
    labels = torch.full_like(ids, -100)
    labels[mask.bool() & (torch.arange(ids.shape[1]) % 3 == 0)] = 7
    calls: list[int] = []

    def hidden_of(i: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        calls.append(i.shape[1])
        return model.hidden(i, m)

    pooled, masked = encode_by_length(hidden_of, ids, mask, labels, rows=3)
    assert calls == [40, 12, 3]  # longest first; each pass padded to its own longest
    (pooled.square().sum() + sum(r.sum() for r, _ in masked)).backward()
    sorted_grads = _grads(model)
    model.model.zero_grad(set_to_none=True)

    hidden = model.hidden(ids, mask)
    expected = mean_pool(hidden, mask)
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=1e-4)
    rows = hidden[labels != -100]
    assert sum(len(t) for _, t in masked) == len(rows)
    (expected.square().sum() + rows.sum()).backward()
    for name, grad in _grads(model).items():
        torch.testing.assert_close(sorted_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)
