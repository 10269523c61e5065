"""SIGKILL mid-indexing loses nothing acknowledged and duplicates nothing (SQLite and
PostgreSQL); bench/crash_cycles.py runs the same harness for hundreds of cycles."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.crash_harness import run_cycles

pytestmark = pytest.mark.slow


def test_kill_9_while_indexing(database_url: str, tiny_bundle: Path, tmp_path: Path) -> None:
    state = run_cycles(tiny_bundle, database_url, tmp_path / "idx", cycles=3, seed=11)
    assert state.cycles == 3
    assert sum(state.acked_during_cycles) > 0  # the client really was indexing when killed
