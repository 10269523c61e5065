"""The DeCLUTR span sampler: a pure function from a note length and an RNG to token spans."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

# Where a positive may sit relative to its anchor. "overlap" is DeCLUTR's own rule (overlapping,
# adjacent or inside); "adjacent" only right before or right after it, sharing no token, so the
# encoder cannot solve the task by matching the same words; "disjoint" anywhere in the note
# outside the anchor, so what the two spans share is mostly what the whole note is about.
PositiveMode = Literal["overlap", "adjacent", "disjoint"]


@dataclass(frozen=True, slots=True)
class Span:
    """Half-open token range [start, end) within a note's tokens (no special tokens)."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class AnchorSpans:
    anchor: Span
    positives: tuple[Span, ...]


def span_bounds(
    num_tokens: int, num_anchors: int, min_span: int, max_span: int
) -> tuple[int, int] | None:
    """(min, max) span length for a note, or None when the note is too short to use.

    The original DeCLUTR needs num_tokens >= 2 * num_anchors * max_span and silently drops
    shorter notes; here max_span shrinks to num_tokens // (2 * num_anchors) instead, so only
    notes shorter than 2 * num_anchors * min_span are dropped.
    """
    if num_anchors < 1 or min_span < 1 or max_span < min_span:
        raise ValueError("need num_anchors >= 1 and 1 <= min_span <= max_span")
    effective_max = min(max_span, num_tokens // (2 * num_anchors))
    if effective_max < min_span:
        return None
    return min_span, effective_max


def _length(rng: np.random.Generator, a: float, b: float, low: int, high: int) -> int:
    return int(rng.beta(a, b) * (high - low) + low)


def sample_spans(
    num_tokens: int,
    *,
    num_anchors: int,
    num_positives: int,
    min_span: int,
    max_span: int,
    rng: np.random.Generator,
    positive_mode: PositiveMode = "overlap",
    positive_max_span: int | None = None,
) -> list[AnchorSpans] | None:
    """Sample num_anchors anchors, each with num_positives positives, or None if too short.

    Anchor length ~ int(Beta(4, 2) * (max - min) + min) (skewed long); anchor i sits inside
    the i-th of num_anchors equal blocks, so anchors never overlap. Positive length ~
    int(Beta(2, 4) * (max - min) + min) (skewed short). With positive_mode "overlap" its start
    is uniform over every position where it overlaps, is adjacent to, or is subsumed by its
    anchor, clipped to the note; with "adjacent" it ends where the anchor starts or starts where
    the anchor ends (a side chosen at random among those with room; shortened to fit).
    `positive_max_span` caps positives below the anchors' maximum: short passages that must
    find the long span they belong with, as a short query finds its note.
    """
    if num_positives < 1:
        raise ValueError("need num_positives >= 1")
    bounds = span_bounds(num_tokens, num_anchors, min_span, max_span)
    if bounds is None:
        return None
    low, high = bounds
    pos_high = high if positive_max_span is None else max(low, min(high, positive_max_span))
    block = num_tokens // num_anchors
    result = []
    for index in range(num_anchors):
        anchor_len = _length(rng, 4.0, 2.0, low, high)
        anchor_start = index * block + int(rng.integers(0, block - anchor_len + 1))
        anchor = Span(anchor_start, anchor_start + anchor_len)
        positives = []
        for _ in range(num_positives):
            pos_len = _length(rng, 2.0, 4.0, low, pos_high)
            if positive_mode != "overlap":
                side = _adjacent(anchor, pos_len, num_tokens, low, rng)
                positives.append(
                    side if positive_mode == "adjacent" else _slide(side, anchor, num_tokens, rng)
                )
                continue
            # start in [anchor.start - pos_len, anchor.end]: overlapping, adjacent or inside.
            first = max(0, anchor.start - pos_len)
            last = min(anchor.end, num_tokens - pos_len)
            pos_start = int(rng.integers(first, last + 1))
            positives.append(Span(pos_start, pos_start + pos_len))
        result.append(AnchorSpans(anchor=anchor, positives=tuple(positives)))
    return result


def _adjacent(
    anchor: Span, length: int, num_tokens: int, low: int, rng: np.random.Generator
) -> Span:
    """A span of up to `length` tokens touching the anchor on one side, sharing no token.

    A side with room for at least `low` tokens is chosen at random; when neither has (only in
    notes barely long enough to keep), the larger side is used, shortened to fit: it holds at
    least one token because an anchor is at most half the note (span_bounds).
    """
    before, after = anchor.start, num_tokens - anchor.end
    sides = [side for side, room in (("before", before), ("after", after)) if room >= low]
    if sides:
        side = sides[int(rng.integers(len(sides)))]
    else:
        side = "before" if before >= after else "after"
    if side == "before":
        size = min(length, before)
        return Span(anchor.start - size, anchor.start)
    size = min(length, after)
    return Span(anchor.end, anchor.end + size)


def _slide(span: Span, anchor: Span, num_tokens: int, rng: np.random.Generator) -> Span:
    """Move a span that touches the anchor to a uniform start on the same side, still clear of
    the anchor: anywhere in [0, anchor.start - len] before it, [anchor.end, n - len] after."""
    if span.end <= anchor.start:
        start = int(rng.integers(0, anchor.start - span.length + 1))
    else:
        start = int(rng.integers(anchor.end, num_tokens - span.length + 1))
    return Span(start, start + span.length)
