"""Admission at the documented maximum request size (issue 14): a request within the limits is
served on an idle service even when its own work takes longer than the deadline (it used to get
`503 retry shortly` every time); one over max_request_tokens gets a 413 that says how to split
it; a 503 means a busy queue, and the Retry-After it gives works."""

from __future__ import annotations

import asyncio
import functools
import math
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.inference.tokenize import NoteTokenizer
from service.settings import Settings
from tests.conftest import LiveServer, make_settings

WORD = "patient admitted with chest pain and shortness of breath "


def tokens_of(settings: Settings, bundle: Path, texts: list[str]) -> int:
    """Window tokens as the service counts them (special tokens and overlaps included)."""
    tokenizer = _tokenizer(bundle, settings.window_overlap_tokens, settings.max_windows_per_note)
    return sum(n.window_tokens for n in tokenizer.tokenize(texts, "chunk"))


@functools.cache
def _tokenizer(bundle: Path, overlap_tokens: int, max_windows: int) -> NoteTokenizer:
    from service.bundle import load_bundle

    return NoteTokenizer(
        bundle / "tokenizer.json",
        max_tokens=load_bundle(bundle).manifest.max_tokens,
        overlap_tokens=overlap_tokens,
        max_windows_per_note=max_windows,
    )


def notes_at_the_maximum(settings: Settings, bundle: Path) -> list[str]:
    """max_notes_per_request notes, each as long as an equal share of max_request_tokens
    allows (they differ in one leading digit, which is one token for every digit)."""
    count = settings.max_notes_per_request
    per_note = settings.request_token_limit // count
    words = WORD.split()

    def note(i: int, length: int) -> str:
        return f"{i % 10} " + " ".join(words[j % len(words)] for j in range(length))

    low, high = 1, 4 * per_note
    while low < high:  # the longest note whose windows fit its share
        mid = (low + high + 1) // 2
        if tokens_of(settings, bundle, [note(0, mid)]) <= per_note:
            low = mid
        else:
            high = mid - 1
    return [note(i, low) for i in range(count)]


@pytest.fixture(scope="module")
def short_deadline(tiny_bundle: Path) -> Iterator[LiveServer]:
    # Defaults for every limit, but a deadline far shorter than a maximal request's own work.
    settings = make_settings(tiny_bundle, warmup=False, request_deadline_ms=100)
    with LiveServer(settings) as live:
        yield live


def test_a_maximal_request_is_served_even_when_its_work_exceeds_the_deadline(
    short_deadline: LiveServer, tiny_bundle: Path
) -> None:
    settings = short_deadline.settings
    notes = notes_at_the_maximum(settings, tiny_bundle)
    total = tokens_of(settings, tiny_bundle, notes)
    assert len(notes) == settings.max_notes_per_request == 256
    assert 0.95 * settings.request_token_limit <= total <= settings.request_token_limit == 65_536
    with short_deadline.client(timeout=120) as c:
        assert c.post("/embed", json={"notes": ["warm up"]}).status_code == 200  # rate known
        for path, body in (
            ("/embed", {"notes": notes}),
            ("/notes", {"notes": [{"id": f"m{i}", "text": t} for i, t in enumerate(notes)]}),
        ):
            r = c.post(path, json=body)
            assert r.status_code == 200, (path, r.text[:300])


def test_over_max_request_tokens_is_413_saying_how_to_split_and_the_advice_works(
    short_deadline: LiveServer, tiny_bundle: Path
) -> None:
    settings = short_deadline.settings
    notes = notes_at_the_maximum(settings, tiny_bundle)
    notes[0] = notes[0] * 3  # now over the token limit, still 256 notes
    with short_deadline.client(timeout=120) as c:
        r = c.post("/embed", json={"notes": notes})
        assert r.status_code == 413, r.text
        error = r.json()["error"]
        assert error["param"] == "notes" and "Retry-After" not in r.headers
        advice = re.search(
            r"split it into (\d+) or more requests of at most (\d+) notes", error["message"]
        )
        assert advice is not None, error["message"]
        parts, per_request = int(advice.group(1)), int(advice.group(2))
        assert parts == math.ceil(len(notes) / per_request)
        for start in range(0, len(notes), per_request):  # following the advice succeeds
            chunk = notes[start : start + per_request]
            if tokens_of(settings, tiny_bundle, chunk) <= settings.request_token_limit:
                assert c.post("/embed", json={"notes": chunk}).status_code == 200


def test_a_503_means_a_busy_queue_and_its_retry_after_works(
    short_deadline: LiveServer, tiny_bundle: Path
) -> None:
    # Several maximal requests at once: the queue ahead of the later ones is far more than
    # half their deadline, so they are refused; retrying after Retry-After serves them all.
    notes = notes_at_the_maximum(short_deadline.settings, tiny_bundle)[:64]

    async def one(http: httpx.AsyncClient) -> tuple[int, int]:
        refusals = 0
        while True:
            r = await http.post("/embed", json={"notes": notes})
            if r.status_code != 503:
                return r.status_code, refusals
            assert r.json()["error"]["code"] in ("overloaded", "deadline_exceeded")
            refusals += 1
            assert refusals < 50, "retrying never helped"
            await asyncio.sleep(float(r.headers["retry-after"]))

    async def main() -> list[tuple[int, int]]:
        async with httpx.AsyncClient(base_url=short_deadline.url, timeout=120) as http:
            return await asyncio.gather(*(one(http) for _ in range(6)))

    outcomes = asyncio.run(main())
    assert [status for status, _ in outcomes] == [200] * 6
    assert sum(refusals for _, refusals in outcomes) > 0  # the queue really was busy


MTSAMPLES = Path(__file__).resolve().parents[2].parent / "shared/data/mtsamples/mtsamples.csv"


@pytest.mark.realmodel
@pytest.mark.slow
def test_mtsamples_notes_at_the_documented_maximum_with_the_real_model(
    minilm_bundle: Path,
) -> None:
    """The issue's case on the CI machine: typical MTSamples notes, as many as the default
    limits allow, on all-MiniLM-L6-v2 with the default runtime. The deadline is cut to 10 s so
    that the request's own work (about 16 s on the 2-core CI machine) is well past half of it,
    as the default 30 s deadline is on slower CPUs (fp32 ONNX Runtime there: about 30 s)."""
    import csv

    if not MTSAMPLES.is_file():
        pytest.skip(f"MTSamples not found at {MTSAMPLES}")
    csv.field_size_limit(10**8)
    with MTSAMPLES.open(newline="", encoding="utf-8") as handle:
        texts = sorted({r["transcription"].strip() for r in csv.DictReader(handle)} - {""})
    settings = make_settings(minilm_bundle, intra_op_threads=2, request_deadline_ms=10_000)
    notes: list[str] = []
    total = 0
    for text in texts[::7]:  # a spread of lengths, deterministic
        cost = tokens_of(settings, minilm_bundle, [text])
        if total + cost > settings.request_token_limit or len(notes) == 256:
            over = text
            break
        notes.append(text)
        total += cost
    assert len(notes) >= 50  # the issue: 50 typical notes were refused every time
    with LiveServer(settings) as live, live.client(timeout=300) as c:
        assert c.post("/embed", json={"notes": notes[:4]}).status_code == 200  # rate measured
        r = c.post("/embed", json={"notes": notes})
        assert r.status_code == 200, r.text[:300]
        refused = c.post("/embed", json={"notes": [*notes, over]})
        assert refused.status_code == 413
        assert "split it into 2 or more requests" in refused.json()["error"]["message"]
