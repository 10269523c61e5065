"""The audit trail in the database: who (key, acting user), what (action, status), how much
(items), with which model, and for searches the note ids returned. Never note text, query text
or vectors.

Entries are written by one background thread in small batches, so an audited request does not
wait for its own fsync; shutdown flushes what is queued. While the database is unavailable (an
outage, a full disk) entries are kept, up to `max_queued`, and written once it is back.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from service.errors import Unavailable
from service.registry.database import session_factory
from service.registry.failures import classify
from service.registry.tables import AuditEntry, utcnow

log = logging.getLogger(__name__)

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
        self._max_held = max_queued
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
        held: list[AuditRecord] = []  # entries an unavailable database kept from being written
        failures = 0
        while not stopping:
            wait_s = min(5.0, self._flush_every_s * 2**failures)  # back off while it is down
            batch, stopping = self._collect(wait_s)
            pending, held = held + batch, []
            while pending:
                chunk, pending = pending[:500], pending[500:]
                if not self._flush(chunk, quiet=failures > 0):
                    held = chunk + pending
                    break
            if held:
                failures += 1
                if len(held) > self._max_held:  # bounded: the oldest go first, counted
                    log.error(
                        "audit: %d entries dropped while the database is unavailable",
                        len(held) - self._max_held,
                    )
                    held = held[-self._max_held :]
            elif failures:
                log.warning("audit: database reachable again after %d failed writes", failures)
                failures = 0
        if held:
            log.error("audit: %d entries not written at shutdown (database unavailable)", len(held))

    def _collect(self, wait_s: float) -> tuple[list[AuditRecord], bool]:
        batch: list[AuditRecord] = []
        try:
            item = self._queue.get(timeout=wait_s)
            while True:
                if item is None:
                    return batch, True
                batch.append(item)
                if len(batch) >= 500:
                    return batch, False
                item = self._queue.get_nowait()
        except queue.Empty:
            return batch, False

    def _flush(self, batch: list[AuditRecord], *, quiet: bool = False) -> bool:
        """Write a batch; False when the database is unavailable (keep it and retry)."""
        try:
            with self._write.begin() as session:
                session.add_all(AuditEntry(**vars(r)) for r in batch)
        except SQLAlchemyError as exc:
            failure = classify(exc, retry_after_s=1)
            retry = isinstance(failure.error, Unavailable)
            if not quiet or not retry:
                log.error(
                    "audit write of %d entries failed (%s)%s",
                    len(batch),
                    failure.label,
                    "; kept, retrying" if retry else "; dropped",
                )
            return not retry
        except Exception as exc:  # noqa: BLE001 - keep auditing after an unexpected error
            log.error(
                "audit write of %d entries failed (%s); dropped", len(batch), type(exc).__name__
            )
        return True

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
