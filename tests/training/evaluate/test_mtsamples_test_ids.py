"""The committed MTSamples test ids equal what the suite's loader computes."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.evaluate.suite.loaders.mtsamples import held_out_note_ids

REPO = Path(__file__).resolve().parents[3]
MTSAMPLES = REPO.parent / "shared" / "data" / "mtsamples" / "mtsamples.csv"
COMMITTED = REPO / "training" / "configs" / "mtsamples-test-ids.txt"


@pytest.mark.realdata
@pytest.mark.skipif(not MTSAMPLES.is_file(), reason="needs ../shared/data/mtsamples")
def test_committed_test_ids_are_the_loaders() -> None:
    committed = COMMITTED.read_text(encoding="utf-8").split()
    assert committed == held_out_note_ids(MTSAMPLES)
    assert len(committed) == len(set(committed))
