"""`index backfill`: a CSV or Parquet archive into the notes table, embedded as the service
embeds, idempotent on a second run, and a bad row refused by row and column, never by value."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from service.cli import index
from service.orchestration.backfill import ArchiveColumns, ArchiveRejected, backfill_archive
from service.orchestration.rebuild import offline_runtime
from service.registry.database import make_engine
from service.registry.notes import NoteStore
from tests.conftest import make_settings, registry_with_versions
from tests.support.tiny_model import synthetic_corpus

CANARY = "CANARY-backfill-5531"
TEXTS = synthetic_corpus(30, seed=9)
COLUMNS = ArchiveColumns(
    id="note_id",
    text="body",
    category="specialty",
    time="written",
    source="system",
    metadata=("ward",),
)


def rows() -> list[dict[str, str]]:
    out = [
        {
            "note_id": f"n{i}",
            "body": text,
            "specialty": ["cardiology", "radiology"][i % 2],
            "written": f"2025-0{1 + i % 9}-10T08:00:00",
            "system": "epr",
            "ward": f"w{i % 3}" if i % 4 else "",
            "ignored": CANARY,
        }
        for i, text in enumerate(TEXTS)
    ]
    out.append({**out[5], "body": TEXTS[5] + " addendum: reviewed"})  # n5 again, newer text
    return out


def write_csv(path: Path, table: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    return path


def test_an_archive_is_stored_embedded_and_loaded_again_idempotently(
    database_url: str, tiny_bundle: Path, tmp_path: Path
) -> None:
    registry = registry_with_versions(database_url, tiny_bundle)
    row = registry.get("tiny@1")
    settings = make_settings(tiny_bundle, database_url=database_url)
    archive = write_csv(tmp_path / "archive.csv", rows())

    first = backfill_archive(settings, row, archive, COLUMNS, batch_notes=8)
    assert (first.rows, first.created, first.updated) == (31, 30, 1)  # n5 updated by row 31

    store = NoteStore(make_engine(database_url), store_text=True)
    note = store.get("n4")
    assert note is not None and note.category == "cardiology" and note.source == "epr"
    assert note.note_time is not None and note.note_time.utcoffset() is not None
    assert note.extra is None  # an empty metadata cell is no metadata
    n6 = store.get("n6")
    assert n6 is not None and n6.extra == {"ward": "w0"}

    # The vectors are the ones the service's runtime gives (n5: its newer text).
    live, covered = store.vectors.counts(row.id)
    assert live == covered == 30
    runtime = offline_runtime(settings, row)
    texts = [*TEXTS[:5], TEXTS[5] + " addendum: reviewed", *TEXTS[6:]]
    expected = runtime.embed_sync(texts, "chunk", settings.max_batch_tokens)
    for i in (0, 5, 29):
        found = store.vectors.vector_of(f"n{i}", row.id)
        assert found is not None
        assert float(np.dot(found[1], expected[i])) == pytest.approx(1.0, abs=1e-5)

    again = backfill_archive(settings, row, archive, COLUMNS, batch_notes=8)
    # Row 6 (n5's older text) and row 31 (its newer) fall in different batches: the older
    # one is a change again, the newer one then too; everything else is left as it is.
    assert again.created == 0 and again.unchanged == 29 and again.updated == 2


def test_a_bad_row_is_refused_by_number_and_column_and_rows_before_it_stay(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    settings = make_settings(tiny_bundle)  # SQLite: the rules do not depend on the database
    row = registry_with_versions(settings.database_url, tiny_bundle).get("tiny@1")
    table = rows()[:6]
    table[3] = {**table[3], "body": "   "}
    table[4] = {**table[4], "body": CANARY + "\x00"}
    archive = write_csv(tmp_path / "bad.csv", table)

    with pytest.raises(ArchiveRejected, match=r"row 4, column 'body': empty") as refused:
        backfill_archive(settings, row, archive, COLUMNS, batch_notes=2)
    assert CANARY not in str(refused.value)
    store = NoteStore(make_engine(settings.database_url), store_text=True)
    assert store.get("n1") is not None and store.get("n2") is None  # batches of two

    table[3] = rows()[3]
    write_csv(archive, table)
    with pytest.raises(ArchiveRejected, match="row 5, column 'body': holds a NUL") as refused:
        backfill_archive(settings, row, archive, COLUMNS, batch_notes=2)
    assert CANARY not in str(refused.value)


def test_parquet_loads_and_the_cli_names_missing_columns(tiny_bundle: Path, tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    settings = make_settings(tiny_bundle)
    row = registry_with_versions(settings.database_url, tiny_bundle).get("tiny@1")
    archive = tmp_path / "archive.parquet"
    pq.write_table(pa.Table.from_pylist(rows()[:10]), archive)
    loaded = backfill_archive(settings, row, archive, COLUMNS, batch_notes=4)
    assert (loaded.rows, loaded.created) == (10, 10)

    # The command, in process: the default columns, id and text, are not in this archive.
    missing = CliRunner().invoke(
        index.app,
        ["backfill", str(archive)],
        env={"NOTESPACE_DATABASE_URL": settings.database_url},
    )
    assert missing.exit_code == 1
    assert "archive.parquet has no column 'id', 'text'" in missing.output
    assert CANARY not in missing.output
