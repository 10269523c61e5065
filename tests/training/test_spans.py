"""Property tests for the DeCLUTR span sampler."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from training.data.spans import sample_spans, span_bounds


@st.composite
def sampler_args(draw: st.DrawFn) -> dict[str, int]:
    min_span = draw(st.integers(1, 32))
    return {
        "num_tokens": draw(st.integers(0, 3000)),
        "num_anchors": draw(st.integers(1, 4)),
        "num_positives": draw(st.integers(1, 4)),
        "min_span": min_span,
        "max_span": draw(st.integers(min_span, 256)),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@settings(max_examples=300, deadline=None)
@given(sampler_args())
def test_spans_are_valid(args: dict[str, int]) -> None:
    n, a = args["num_tokens"], args["num_anchors"]
    result = sample_spans(
        n,
        num_anchors=a,
        num_positives=args["num_positives"],
        min_span=args["min_span"],
        max_span=args["max_span"],
        rng=np.random.default_rng(args["seed"]),
    )
    bounds = span_bounds(n, a, args["min_span"], args["max_span"])
    if n < 2 * a * args["min_span"]:
        assert result is None and bounds is None  # only truly short notes are dropped
        return
    assert result is not None and bounds is not None
    low, high = bounds
    assert high == min(args["max_span"], n // (2 * a))
    assert len(result) == a
    anchors = sorted((s.anchor for s in result), key=lambda s: s.start)
    for first, second in itertools.pairwise(anchors):
        assert first.end <= second.start  # anchors never overlap
    for spans in result:
        anchor = spans.anchor
        assert 0 <= anchor.start < anchor.end <= n
        assert low <= anchor.length <= high
        assert len(spans.positives) == args["num_positives"]
        for pos in spans.positives:
            assert 0 <= pos.start < pos.end <= n
            assert low <= pos.length <= high
            # overlapping, adjacent to, or inside the anchor
            assert pos.start <= anchor.end and pos.end >= anchor.start


@settings(max_examples=50, deadline=None)
@given(sampler_args())
def test_sampler_is_a_pure_function_of_its_rng(args: dict[str, int]) -> None:
    kwargs = {k: v for k, v in args.items() if k not in {"seed", "num_tokens"}}
    one = sample_spans(args["num_tokens"], rng=np.random.default_rng(args["seed"]), **kwargs)
    two = sample_spans(args["num_tokens"], rng=np.random.default_rng(args["seed"]), **kwargs)
    assert one == two


def test_short_notes_adapt_instead_of_dropping() -> None:
    # The original rule (>= 2 * A * max_span tokens) would drop a 100-token note at max 64.
    spans = sample_spans(
        100, num_anchors=2, num_positives=2, min_span=8, max_span=64, rng=np.random.default_rng(0)
    )
    assert spans is not None
    assert all(s.anchor.length <= 25 for s in spans)


def test_anchor_lengths_skew_long_and_positives_short() -> None:
    rng = np.random.default_rng(0)
    anchors, positives = [], []
    for _ in range(300):
        spans = sample_spans(
            2000, num_anchors=2, num_positives=2, min_span=8, max_span=200, rng=rng
        )
        assert spans is not None
        anchors += [s.anchor.length for s in spans]
        positives += [p.length for s in spans for p in s.positives]
    # Beta(4,2) mean 2/3, Beta(2,4) mean 1/3 of the range: 8 + 192 * mean (tolerance 10 tokens).
    assert abs(np.mean(anchors) - (8 + 192 * 2 / 3)) < 10
    assert abs(np.mean(positives) - (8 + 192 / 3)) < 10


@settings(max_examples=300, deadline=None)
@given(sampler_args(), st.sampled_from(["adjacent", "disjoint"]))
def test_adjacent_and_disjoint_positives_share_no_token(args: dict[str, int], mode: str) -> None:
    n, a = args["num_tokens"], args["num_anchors"]
    result = sample_spans(
        n,
        num_anchors=a,
        num_positives=args["num_positives"],
        min_span=args["min_span"],
        max_span=args["max_span"],
        rng=np.random.default_rng(args["seed"]),
        positive_mode=mode,  # type: ignore[arg-type]
    )
    if result is None:
        assert n < 2 * a * args["min_span"]
        return
    bounds = span_bounds(n, a, args["min_span"], args["max_span"])
    assert bounds is not None
    low, high = bounds
    for spans in result:
        anchor = spans.anchor
        room = max(anchor.start, n - anchor.end)
        for pos in spans.positives:
            assert 0 <= pos.start < pos.end <= n
            assert pos.end <= anchor.start or pos.start >= anchor.end  # no token shared
            if mode == "adjacent":
                assert pos.end == anchor.start or pos.start == anchor.end  # touching
            assert pos.length <= high
            assert pos.length >= min(low, room)  # shorter only where the note has no room


def test_disjoint_positives_reach_beyond_the_anchors_neighbourhood() -> None:
    rng = np.random.default_rng(0)
    gaps = []
    for _ in range(200):
        spans = sample_spans(
            2000,
            num_anchors=1,
            num_positives=1,
            min_span=32,
            max_span=256,
            rng=rng,
            positive_mode="disjoint",
        )
        assert spans is not None
        anchor, pos = spans[0].anchor, spans[0].positives[0]
        gaps.append(max(anchor.start - pos.end, pos.start - anchor.end))
    assert min(gaps) >= 0 and np.median(gaps) > 100  # adjacent would give gap 0 every time


@settings(max_examples=200, deadline=None)
@given(sampler_args(), st.integers(1, 64), st.sampled_from(["overlap", "adjacent", "disjoint"]))
def test_positive_max_span_caps_positives_only(args: dict[str, int], cap: int, mode: str) -> None:
    n, a = args["num_tokens"], args["num_anchors"]
    kwargs = {
        "num_anchors": a,
        "num_positives": args["num_positives"],
        "min_span": args["min_span"],
        "max_span": args["max_span"],
        "positive_mode": mode,
    }
    capped = sample_spans(
        n, rng=np.random.default_rng(args["seed"]), positive_max_span=cap, **kwargs
    )
    bounds = span_bounds(n, a, args["min_span"], args["max_span"])
    if bounds is None:
        assert capped is None
        return
    assert capped is not None
    low, high = bounds
    for spans in capped:
        assert low <= spans.anchor.length <= high
        for pos in spans.positives:
            assert pos.length <= max(low, min(high, cap))
