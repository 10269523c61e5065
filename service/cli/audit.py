"""`notespace audit export`: the audit trail for information governance, as CSV or JSON lines."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from service.cli.common import DatabaseOption, database_url, open_registry

if TYPE_CHECKING:
    from service.registry.tables import AuditEntry

app = typer.Typer(help="The audit trail, for information governance.", no_args_is_help=True)

EXPORT_FIELDS: Sequence[str] = (
    "id",
    "at",
    "key_id",
    "key_name",
    "acting_user",
    "action",
    "status",
    "item_count",
    "model",
    "note_ids",
    "client",
)
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP CSV injection;
# the full-width forms too, which some spreadsheets normalise).
_FORMULA_STARTS = tuple("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")


class ExportFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


def export_rows(entries: Iterator[AuditEntry]) -> Iterator[dict[str, object]]:
    for e in entries:
        yield {
            "id": e.id,
            "at": e.at.isoformat(),
            "key_id": e.key_id,
            "key_name": e.key_name,
            "acting_user": e.acting_user,
            "action": e.action,
            "status": e.status,
            "item_count": e.item_count,
            "model": e.model_ref,
            "note_ids": e.note_ids,
            "client": e.client,
        }


def spreadsheet_safe(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a leading quote disarms a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(rows: Iterable[dict[str, object]], handle: TextIO) -> None:
    """The export as CSV, every text cell spreadsheet-safe (acting users, key names and note
    ids come from clients)."""
    writer = csv.DictWriter(handle, fieldnames=list(EXPORT_FIELDS))
    writer.writeheader()
    for row in rows:
        note_ids = row.get("note_ids")
        flat = {**row, "note_ids": " ".join(note_ids) if isinstance(note_ids, list) else ""}
        writer.writerow({name: spreadsheet_safe(value) for name, value in flat.items()})


def _iso_time(text: str | None, flag: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError as exc:
        raise typer.BadParameter(f"must be an ISO time: {exc}", param_hint=flag) from None


@app.command("export")
def audit_export(
    out: Annotated[Path | None, typer.Option(help="file to write [default: stdout]")] = None,
    output_format: Annotated[ExportFormat, typer.Option("--format")] = ExportFormat.CSV,
    since: Annotated[str | None, typer.Option(help="ISO time, inclusive")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time, exclusive")] = None,
    url: DatabaseOption = None,
) -> None:
    """Export audit entries: who, when, what action, how many items, which model, result ids."""
    from service.registry.audit import AuditLog
    from service.registry.database import make_engine

    start, end = _iso_time(since, "--since"), _iso_time(until, "--until")
    open_registry(url)  # exits clearly on an un-migrated database
    log = AuditLog(make_engine(database_url(url)))
    rows = export_rows(log.entries(start, end))
    handle = out.open("w", newline="", encoding="utf-8") if out else sys.stdout
    try:
        if output_format is ExportFormat.JSONL:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
        else:
            write_csv(rows, handle)  # spreadsheet-safe: client-chosen values cannot run
    finally:
        if out:
            handle.close()
