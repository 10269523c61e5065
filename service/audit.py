"""The audit trail: who (key, acting user), what (action, status), how much (items), with which
model, and for searches the note ids returned. Never note text, query text or vectors.

Entries are written by one background thread in small batches, so an audited request does not
wait for its own fsync; shutdown flushes what is queued.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, select

from service.registry.database import session_factory
from service.registry.tables import AuditEntry, utcnow

log = logging.getLogger(__name__)

ACTING_USER_HEADER = "x-acting-user"
_MAX_NOTE_IDS = 1000


@dataclass
class AuditRecord:
    action: str
    status: int
    key_id: str | None = None
    key_name: str | None = None
    acting_user: str | None = None
    item_count: int | None = None
    model_ref: str | None = None
    note_ids: list[str] | None = None
    client: str | None = None
    at: datetime = field(default_factory=utcnow)


class AuditLog:
    def __init__(self, engine: Engine, *, flush_every_s: float = 0.2, max_queued: int = 10_000):
        self._write = session_factory(engine, writer=True)
        self._read = session_factory(engine)
        self._queue: queue.Queue[AuditRecord | None] = queue.Queue(maxsize=max_queued)
        self._flush_every_s = flush_every_s
        self._thread = threading.Thread(target=self._run, name="notespace-audit", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(30)

    def record(self, entry: AuditRecord) -> None:
        """Queue an entry; blocks (back-pressure) rather than drop one when the queue is full."""
        if entry.note_ids is not None:
            entry.note_ids = entry.note_ids[:_MAX_NOTE_IDS]
        self._queue.put(entry)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[AuditRecord] = []
            try:
                item = self._queue.get(timeout=self._flush_every_s)
                while True:
                    if item is None:
                        stopping = True
                    else:
                        batch.append(item)
                    if len(batch) >= 500:
                        break
                    item = self._queue.get_nowait()
            except queue.Empty:
                pass
            if batch:
                self._flush(batch)

    def _flush(self, batch: list[AuditRecord]) -> None:
        try:
            with self._write.begin() as session:
                session.add_all(AuditEntry(**vars(r)) for r in batch)
        except Exception as exc:  # noqa: BLE001 - keep auditing after a transient DB error
            log.error("audit write of %d entries failed (%s)", len(batch), type(exc).__name__)

    def entries(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[AuditEntry]:
        query = select(AuditEntry).order_by(AuditEntry.id)
        if since is not None:
            query = query.where(AuditEntry.at >= since)
        if until is not None:
            query = query.where(AuditEntry.at < until)
        with self._read() as session:
            yield from session.scalars(query.execution_options(yield_per=1000))


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
