"""MTSamples through the HTTP API: every distinct note indexed; a note's own text finds it first."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import LiveServer, make_settings
from tests.support.mtsamples_probe import MTSAMPLES_CSV, index_and_probe

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MTSAMPLES_CSV.is_file(), reason="../shared/data/mtsamples not present"),
]


def test_index_mtsamples_and_find_each_note_first(tiny_bundle: Path) -> None:
    settings = make_settings(
        tiny_bundle,
        max_notes_per_request=64,
        max_windows_per_note=4096,
        max_queue_tokens=2**20,
        max_request_tokens=2**20,  # 32 long notes per request in the tiny model's 32-token windows
    )
    with LiveServer(settings) as live:
        result = index_and_probe(live.url, probes=40)
    # 2,357 distinct transcriptions (the data set README); two differ only in whitespace.
    assert result.indexed == 2356
    assert result.self_first == result.probes
    assert result.filtered_ok == result.probes
