"""Objective losses against naive references, masking statistics and a gradient-agreement check."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from training.objectives.category import CategoryHead, supcon_loss
from training.objectives.declutr import declutr_loss, pool_positives
from training.objectives.distill import embedding_distill_loss
from training.objectives.mlm import IGNORE_INDEX, mask_tokens, masked_lm_loss, select_masked
from training.objectives.pooling import mean_pool


def naive_declutr(
    anchors: torch.Tensor, positives: torch.Tensor, notes: list[int], tau: float
) -> torch.Tensor:
    z = [F.normalize(v, dim=0) for v in [*anchors, *positives]]
    owner = notes + notes
    n = len(notes)
    total = torch.tensor(0.0, dtype=torch.float64)
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        numerator = torch.exp((z[i] @ z[partner]) / tau)
        denominator = numerator.clone()
        for k in range(2 * n):
            if k not in (i, partner) and owner[k] != owner[i]:
                denominator = denominator + torch.exp((z[i] @ z[k]) / tau)
        total = total - torch.log(numerator / denominator)
    return total / (2 * n)


def naive_supcon(emb: torch.Tensor, labels: list[int], tau: float) -> torch.Tensor:
    z = F.normalize(emb, dim=1)
    losses = []
    for i in range(len(labels)):
        others = [a for a in range(len(labels)) if a != i]
        pos = [p for p in others if labels[p] == labels[i]]
        if not pos:
            continue
        denom = sum(torch.exp(z[i] @ z[a] / tau) for a in others)
        losses.append(-sum(torch.log(torch.exp(z[i] @ z[p] / tau) / denom) for p in pos) / len(pos))
    return torch.stack(losses).mean()


def test_declutr_matches_naive_reference() -> None:
    g = torch.Generator().manual_seed(0)
    anchors = torch.randn(6, 8, generator=g, dtype=torch.float64)
    positives = torch.randn(6, 8, generator=g, dtype=torch.float64)
    notes = [0, 0, 1, 1, 2, 2]
    # temperature 0.5 keeps the naive exp() well inside float64 range; tolerance 1e-6
    got = declutr_loss(anchors, positives, torch.tensor(notes), temperature=0.5)
    assert got.item() == pytest.approx(
        naive_declutr(anchors, positives, notes, 0.5).item(), abs=1e-6
    )


def test_declutr_same_note_anchors_are_not_negatives() -> None:
    # Two anchors of one note that are identical: with masking they cannot hurt each other.
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    loss = declutr_loss(a, p, torch.tensor([0, 0]), temperature=0.05)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    unmasked = declutr_loss(a, p, torch.tensor([0, 1]), temperature=0.05)
    assert unmasked.item() == pytest.approx(math.log(3), abs=1e-5)


def test_pool_positives_averages_each_anchor_group() -> None:
    positives = torch.arange(12.0).view(6, 2)  # 3 anchors x 2 positives
    pooled = pool_positives(positives, 2)
    assert torch.equal(pooled, torch.tensor([[1.0, 2.0], [5.0, 6.0], [9.0, 10.0]]))


def test_supcon_matches_naive_reference() -> None:
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(7, 5, generator=g, dtype=torch.float64)
    labels = [0, 1, 0, 2, 1, 0, 3]  # label 2 and 3 have no positive: skipped
    got = supcon_loss(emb, torch.tensor(labels), temperature=0.1)
    assert got.item() == pytest.approx(naive_supcon(emb, labels, 0.1).item(), abs=1e-6)


def test_supcon_treats_negative_labels_as_unlabelled() -> None:
    # Notes without a category (-1) are never positives, neither for each other nor as anchors:
    # the loss equals the loss over the labelled anchors with the unlabelled notes as negatives.
    torch.manual_seed(1)
    z = torch.randn(6, 8)
    labels = torch.tensor([0, 0, 1, 1, -1, -1])
    unique = torch.tensor([0, 0, 1, 1, 100, 101])  # the same notes, each unlabelled one alone
    assert torch.allclose(supcon_loss(z, labels), supcon_loss(z, unique))


def test_supcon_without_positives_is_zero_and_differentiable() -> None:
    emb = torch.randn(3, 4, requires_grad=True)
    loss = supcon_loss(emb, torch.tensor([0, 1, 2]))
    loss.backward()
    assert loss.item() == 0.0 and emb.grad is not None


def test_category_head_maps_pooled_to_logits() -> None:
    head = CategoryHead(4, 3)
    assert head(torch.zeros(2, 4)).shape == (2, 3)


def test_distill_matches_naive_reference_and_stops_teacher_gradients() -> None:
    g = torch.Generator().manual_seed(2)
    student = torch.randn(5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    naive = sum(
        1 - (s @ t) / (s.norm() * t.norm()) for s, t in zip(student, teacher, strict=True)
    ) / len(student)
    got = embedding_distill_loss(student, teacher)
    assert got.item() == pytest.approx(naive.item(), abs=1e-6)  # the loss runs in fp32
    (naive_grad,) = torch.autograd.grad(naive, student, retain_graph=True)
    got.backward()
    torch.testing.assert_close(student.grad, naive_grad, atol=1e-6, rtol=0)
    assert teacher.grad is None  # the teacher is a target, never trained
    same = embedding_distill_loss(student.detach() * 3.0, student.detach())
    assert same.item() == pytest.approx(0.0, abs=1e-6)  # scale-free, like the served vectors


def test_mask_tokens_rates_and_specials() -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 1000, (64, 256), generator=g)
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True
    masked, labels = mask_tokens(ids, special, mask_token_id=3, vocab_size=1000, generator=g)
    selected = labels != IGNORE_INDEX
    assert not selected[special].any()
    rate = selected.float().mean().item() / (254 / 256)
    assert rate == pytest.approx(0.15, abs=0.01)  # 16k candidates: sd ~0.003
    as_mask = (masked == 3) & selected
    unchanged = (masked == ids) & selected
    assert as_mask.sum().item() / selected.sum().item() == pytest.approx(0.8, abs=0.02)
    # 10% kept + the ~0.1% of random replacements that hit the same id
    assert unchanged.sum().item() / selected.sum().item() == pytest.approx(0.1, abs=0.02)
    assert torch.equal(labels[selected], ids[selected])


def test_masked_only_logits_equal_full_logits_loss_and_gradients() -> None:
    """The cheap path (project masked rows only) and the usual one (project every position,
    ignore_index) must give the same loss and the same gradients; tolerance 1e-6."""
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 10, 8, generator=g, dtype=torch.float64, requires_grad=True)
    head = torch.nn.Linear(8, 50).double()
    labels = torch.full((3, 10), IGNORE_INDEX)
    labels[0, 2], labels[1, 5], labels[2, 9], labels[2, 0] = 7, 11, 3, 49

    rows, targets = select_masked(hidden, labels)
    cheap = masked_lm_loss(head(rows).double(), targets)
    cheap_grads = torch.autograd.grad(cheap, [hidden, head.weight])

    full_logits = head(hidden)  # [B, T, V]
    full = F.cross_entropy(full_logits.view(-1, 50), labels.view(-1), ignore_index=IGNORE_INDEX)
    full_grads = torch.autograd.grad(full, [hidden, head.weight])

    assert cheap.item() == pytest.approx(full.item(), abs=1e-6)  # loss runs in fp32
    for a, b in zip(cheap_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_mean_pool_ignores_padding() -> None:
    hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert mean_pool(hidden, mask).item() == pytest.approx(2.0)
