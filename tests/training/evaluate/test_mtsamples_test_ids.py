"""The committed MTSamples id files equal what the suite's loader computes."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.evaluate.suite.loaders.mtsamples import evaluation_note_ids, held_out_note_ids

REPO = Path(__file__).resolve().parents[3]
MTSAMPLES = REPO.parent / "shared" / "data" / "mtsamples" / "mtsamples.csv"
CONFIGS = REPO / "training" / "configs"


@pytest.mark.realdata
@pytest.mark.skipif(not MTSAMPLES.is_file(), reason="needs ../shared/data/mtsamples")
def test_committed_id_files_are_the_loaders() -> None:
    test_ids = (CONFIGS / "mtsamples-test-ids.txt").read_text(encoding="utf-8").split()
    assert test_ids == held_out_note_ids(MTSAMPLES)
    eval_ids = (CONFIGS / "mtsamples-eval-ids.txt").read_text(encoding="utf-8").split()
    assert eval_ids == evaluation_note_ids(MTSAMPLES)
    assert len(eval_ids) == len(set(eval_ids)) and set(test_ids) < set(eval_ids)
