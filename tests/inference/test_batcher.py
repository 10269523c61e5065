"""Batcher behaviour, with a recording encoder standing in for the ONNX session."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import numpy.typing as npt
import pytest

from service.errors import DeadlineExceeded, InferenceFailed, Overloaded, PayloadTooLarge
from service.inference.batcher import Batcher
from service.inference.config import BatcherConfig
from service.inference.tokenize import TokenizedNote

DIM = 4


class RecordingEncoder:
    """Returns a vector that encodes the window's first content token; records every batch."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.batches: list[tuple[int, int]] = []  # (rows, padded length)
        self.seen_first_tokens: list[int] = []
        self.delay_s = delay_s
        self.fail = fail
        self.gate = threading.Event()
        self.gate.set()

    def encode(
        self, input_ids: npt.NDArray[np.int64], attention_mask: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        self.gate.wait(10)
        if self.fail:
            raise RuntimeError("boom")
        time.sleep(self.delay_s)
        self.batches.append(input_ids.shape)
        self.seen_first_tokens.extend(int(t) for t in input_ids[:, 1])
        out = np.zeros((len(input_ids), DIM), dtype=np.float32)
        out[np.arange(len(input_ids)), input_ids[:, 1] % DIM] = 1.0
        return out


def note(token: int, length: int, windows: int = 1) -> TokenizedNote:
    wins = tuple(
        np.asarray([101] + [token + w] * (length - 2) + [102], dtype=np.int64)
        for w in range(windows)
    )
    return TokenizedNote(wins, (length - 2,) * windows, (length - 2) * windows, "whole")


def make_batcher(**kw: int) -> Batcher:
    params = {"max_batch_tokens": 64, "max_queue_tokens": 1000, "retry_after_s": 2} | kw
    batcher = Batcher(BatcherConfig(**params))
    batcher.start()
    return batcher


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_vectors_come_back_to_their_own_request_in_order() -> None:
    encoder = RecordingEncoder()
    batcher = make_batcher()

    async def main() -> list[npt.NDArray[np.float32]]:
        jobs = [
            batcher.embed([note(t, 6), note(t + 1, 10)], encoder, pad_token_id=0, deadline_s=5)
            for t in (0, 2)
        ]
        return await asyncio.gather(*jobs)

    first, second = run(main())
    batcher.stop()
    assert np.argmax(first[0]) == 0 and np.argmax(first[1]) == 1
    assert np.argmax(second[0]) == 2 and np.argmax(second[1]) == 3


def test_concurrent_requests_coalesce_sorted_by_length_within_budget() -> None:
    encoder = RecordingEncoder()
    encoder.gate.clear()  # hold the thread so requests pile up
    batcher = make_batcher(max_batch_tokens=64)

    async def main() -> None:
        blocker = asyncio.ensure_future(
            batcher.embed([note(0, 4)], encoder, pad_token_id=0, deadline_s=5)
        )
        await asyncio.sleep(0.05)
        rest = [
            asyncio.ensure_future(
                batcher.embed([note(i, length)], encoder, pad_token_id=0, deadline_s=5)
            )
            for i, length in enumerate([4, 12, 8, 4, 12, 8])
        ]
        await asyncio.sleep(0.05)
        encoder.gate.set()
        await asyncio.gather(blocker, *rest)

    run(main())
    batcher.stop()
    # The first batch ran alone; the six waiting requests (48 tokens) coalesced into one round,
    # cut into batches of at most 64 padded tokens, longest first.
    assert encoder.batches[0] == (1, 4)
    rows = sum(b[0] for b in encoder.batches[1:])
    assert rows == 6
    assert all(r * length <= 64 for r, length in encoder.batches)
    lengths = [length for _, length in encoder.batches[1:]]
    assert lengths == sorted(lengths, reverse=True)


def test_full_queue_answers_overloaded_at_once() -> None:
    encoder = RecordingEncoder()
    encoder.gate.clear()
    batcher = make_batcher(max_batch_tokens=64, max_queue_tokens=100)

    async def main() -> None:
        first = asyncio.ensure_future(
            batcher.embed([note(0, 60)], encoder, pad_token_id=0, deadline_s=5)
        )
        await asyncio.sleep(0.05)  # taken by the thread, which now blocks
        queued = asyncio.ensure_future(
            batcher.embed([note(1, 60)], encoder, pad_token_id=0, deadline_s=5)
        )
        await asyncio.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(Overloaded) as err:
            await batcher.embed([note(2, 60)], encoder, pad_token_id=0, deadline_s=5)
        assert time.monotonic() - started < 0.1
        assert err.value.retry_after_s == 2 and err.value.status == 503
        encoder.gate.set()
        await asyncio.gather(first, queued)

    run(main())
    batcher.stop()


def test_request_larger_than_queue_is_413() -> None:
    batcher = make_batcher(max_batch_tokens=64, max_queue_tokens=100)

    async def main() -> None:
        with pytest.raises(PayloadTooLarge):
            await batcher.embed(
                [note(0, 60, windows=2)], RecordingEncoder(), pad_token_id=0, deadline_s=5
            )

    run(main())
    batcher.stop()


def test_deadline_gives_503_and_the_job_is_skipped() -> None:
    encoder = RecordingEncoder()
    encoder.gate.clear()
    batcher = make_batcher()

    async def main() -> None:
        blocker = asyncio.ensure_future(
            batcher.embed([note(0, 4)], encoder, pad_token_id=0, deadline_s=5)
        )
        await asyncio.sleep(0.05)
        with pytest.raises(DeadlineExceeded):
            await batcher.embed([note(40, 4)], encoder, pad_token_id=0, deadline_s=0.05)
        assert batcher.queued_tokens == 0  # withdrawn from the queue
        encoder.gate.set()
        await blocker

    run(main())
    batcher.stop()
    assert 40 not in encoder.seen_first_tokens


def test_cancelled_request_is_skipped() -> None:
    encoder = RecordingEncoder()
    encoder.gate.clear()
    batcher = make_batcher()

    async def main() -> None:
        blocker = asyncio.ensure_future(
            batcher.embed([note(0, 4)], encoder, pad_token_id=0, deadline_s=5)
        )
        await asyncio.sleep(0.05)
        doomed = asyncio.ensure_future(
            batcher.embed([note(50, 4)], encoder, pad_token_id=0, deadline_s=5)
        )
        await asyncio.sleep(0.01)
        doomed.cancel()
        await asyncio.sleep(0.01)
        encoder.gate.set()
        await blocker
        await asyncio.sleep(0.05)

    run(main())
    batcher.stop()
    assert 50 not in encoder.seen_first_tokens


def test_encoder_failure_fails_the_batch_and_the_thread_survives() -> None:
    encoder = RecordingEncoder(fail=True)
    batcher = make_batcher()

    async def main() -> npt.NDArray[np.float32]:
        with pytest.raises(InferenceFailed):
            await batcher.embed([note(0, 4)], encoder, pad_token_id=0, deadline_s=5)
        encoder.fail = False
        return await batcher.embed([note(1, 4)], encoder, pad_token_id=0, deadline_s=5)

    assert np.argmax(run(main())[0]) == 1
    batcher.stop()


def test_multi_window_note_is_token_weighted_mean() -> None:
    encoder = RecordingEncoder()
    batcher = make_batcher()
    windows = (
        np.asarray([101, 0, 0, 0, 0, 102], dtype=np.int64),  # 4 content tokens → axis 0
        np.asarray([101, 1, 1, 102], dtype=np.int64),  # 2 content tokens → axis 1
    )
    chunked = TokenizedNote(windows, (4, 2), 6, "chunked")

    async def main() -> npt.NDArray[np.float32]:
        return await batcher.embed([chunked], encoder, pad_token_id=0, deadline_s=5)

    (vector,) = run(main())
    batcher.stop()
    expected = np.asarray([4, 2, 0, 0], dtype=np.float32)
    np.testing.assert_allclose(vector, expected / np.linalg.norm(expected), atol=1e-6)


def test_a_request_is_never_refused_for_its_own_size() -> None:
    # The issue-14 failure: a request whose own work exceeds its deadline was refused with 503
    # on an idle service, every time. Now the deadline bounds only the wait for the encoder.
    encoder = RecordingEncoder(delay_s=0.2)
    batcher = make_batcher()

    async def main() -> None:
        await batcher.embed([note(0, 4)], encoder, pad_token_id=0, deadline_s=5)  # rate known
        started = time.monotonic()
        await batcher.embed([note(1, 60)], encoder, pad_token_id=0, deadline_s=0.1)
        assert time.monotonic() - started >= 0.2  # ran past its deadline, and was served

    run(main())
    batcher.stop()


def test_work_ahead_past_half_the_deadline_is_refused_at_once_and_a_retry_works() -> None:
    encoder = RecordingEncoder(delay_s=0.2)  # 4 tokens per 0.2 s: about 20 tokens/s
    batcher = make_batcher()

    async def main() -> None:
        await batcher.embed([note(0, 4)], encoder, pad_token_id=0, deadline_s=5)
        encoder.gate.clear()
        ahead = asyncio.ensure_future(
            batcher.embed([note(1, 60)], encoder, pad_token_id=0, deadline_s=5)
        )
        await asyncio.sleep(0.05)  # taken by the inference thread: ~3 s of work ahead
        started = time.monotonic()
        with pytest.raises(Overloaded, match="ahead") as refused:
            await batcher.embed([note(2, 4)], encoder, pad_token_id=0, deadline_s=2)
        assert time.monotonic() - started < 0.1
        # Retry-After estimates when the work ahead leaves room: (60 - 1 s x 20) / 20 = 2 s.
        assert refused.value.retry_after_s is not None and refused.value.retry_after_s >= 2
        encoder.gate.set()
        await ahead
        await batcher.embed([note(2, 4)], encoder, pad_token_id=0, deadline_s=2)  # the retry

    run(main())
    batcher.stop()


def test_request_over_max_request_tokens_is_413_saying_how_to_split() -> None:
    batcher = make_batcher(max_request_tokens=130)

    async def main() -> None:
        with pytest.raises(PayloadTooLarge) as err:
            await batcher.embed(
                [note(i, 60) for i in range(5)], RecordingEncoder(), pad_token_id=0, deadline_s=5
            )
        message = err.value.message
        assert "300 tokens over 5 notes" in message and "at most 130" in message
        assert "3 or more requests of at most 2 notes" in message
        assert err.value.param == "notes"
        # At the limit exactly, it is served.
        await batcher.embed(
            [note(0, 65), note(1, 65)], RecordingEncoder(), pad_token_id=0, deadline_s=5
        )

    run(main())
    batcher.stop()
