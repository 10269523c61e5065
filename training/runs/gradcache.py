"""Gradient caching for contrastive losses over batches larger than one forward pass.

Gao et al., "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup" (2021);
sentence-transformers' CachedMultipleNegativesRankingLoss is the same idea. Three passes:
embed every chunk without gradients (remembering each chunk's RNG state, so dropout repeats),
compute the loss on all embeddings and its gradient w.r.t. them, then re-embed chunk by chunk
with gradients and back-propagate the cached embedding gradients. The parameter gradients equal
those of one pass over the whole batch (tests/training/test_gradcache.py), at the memory cost of
one chunk and about a third more compute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Chunk:
    """One forward pass worth of sequences: ids and mask [b, T], MLM labels [b, T] or None."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None = None


def split_chunks(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor | None,
    chunk_size: int,
) -> list[Chunk]:
    """[B, T] tensors -> chunks of at most chunk_size rows, each trimmed to its own longest row
    (the batch pads to its longest sequence; a chunk of short spans need not)."""
    chunks = []
    for start in range(0, input_ids.shape[0], chunk_size):
        rows = slice(start, start + chunk_size)
        width = int(attention_mask[rows].sum(dim=1).max())
        chunks.append(
            Chunk(
                input_ids[rows, :width],
                attention_mask[rows, :width],
                None if labels is None else labels[rows, :width],
            )
        )
    return chunks


class RandomState:
    """The CPU (and CUDA) RNG state at creation; `replay()` runs a block from that state."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        started = torch.cuda.is_initialized()  # type: ignore[no-untyped-call]
        self.cuda = torch.cuda.get_rng_state_all() if started else None

    @contextmanager
    def replay(self) -> Iterator[None]:
        devices = list(range(len(self.cuda))) if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state_all(self.cuda)
            yield


# chunk -> (pooled embeddings [b, D], hidden states [b, T, D]); the hidden states feed
# per-token terms (MLM) that are computed during the gradient pass only.
EmbedFn = Callable[[Chunk], tuple[torch.Tensor, torch.Tensor]]
# (group name, hidden [b, T, D], chunk) -> a scalar to add to the loss (already weighted)
ChunkLossFn = Callable[[str, torch.Tensor, Chunk], torch.Tensor]


def cached_backward(
    embed: EmbedFn,
    groups: dict[str, list[Chunk]],
    embedding_loss: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    *,
    scale: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
    chunk_loss: ChunkLossFn | None = None,
) -> torch.Tensor:
    """Back-propagate embedding_loss(all embeddings) + the sum of chunk_loss over chunks.

    `groups` names sequences whose embeddings the loss takes as a whole (e.g. anchors,
    positives); `scale` is applied to every term before backward (gradient accumulation,
    loss scaling). Returns the embedding loss (detached).
    """
    states: dict[str, list[RandomState]] = {}
    cached: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, chunks in groups.items():
            states[name], parts = [], []
            for chunk in chunks:
                states[name].append(RandomState())
                parts.append(embed(chunk)[0])
            cached[name] = torch.cat(parts).detach().requires_grad_()
    loss = embedding_loss(cached)
    scale(loss).backward()  # type: ignore[no-untyped-call]
    for name, chunks in groups.items():
        grad = cached[name].grad
        assert grad is not None  # every group takes part in the loss
        offset = 0
        for chunk, state in zip(chunks, states[name], strict=True):
            with state.replay():
                pooled, hidden = embed(chunk)
            rows = pooled.shape[0]
            surrogate = (pooled * grad[offset : offset + rows]).sum()
            offset += rows
            if chunk_loss is not None:
                surrogate = surrogate + scale(chunk_loss(name, hidden, chunk))
            surrogate.backward()  # type: ignore[no-untyped-call]
    return loss.detach()
