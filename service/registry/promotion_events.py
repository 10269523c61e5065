"""Promotions announced to every replica: PostgreSQL NOTIFY in the promoting transaction (so
it is delivered on commit, and never for a promotion that rolled back), LISTEN on a thread of
each replica. SQLite has no such channel; there the registry poll alone applies."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

CHANNEL = "notespace_promotions"


def announce_promotion(session: Session, model_name: str) -> None:
    """Queue the announcement in `session`'s transaction (PostgreSQL sends it on commit)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_notify(:channel, :name)"), {"channel": CHANNEL, "name": model_name}
        )


class PromotionListener:
    """One LISTEN connection on its own thread; `on_promotion(model_name)` runs on that thread
    for each announcement. A lost connection is reopened after `reconnect_s` (the registry
    poll covers the gap)."""

    def __init__(
        self,
        engine: Engine,
        on_promotion: Callable[[str], None],
        *,
        connect_timeout_s: float = 5.0,
        reconnect_s: float = 2.0,
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("promotion announcements need PostgreSQL")
        # psycopg's own URL (no SQLAlchemy driver suffix), password included, never logged.
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._on_promotion = on_promotion
        self._connect_timeout_s = max(2, round(connect_timeout_s))
        self._reconnect_s = reconnect_s
        self._stopping = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="promotion-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_listening(self, timeout_s: float) -> bool:
        """Whether the LISTEN is in place (announcements from now on are heard)."""
        return self._listening.wait(timeout_s)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(10)

    def _run(self) -> None:
        failing = False  # warn once per outage, not once per retry
        while not self._stopping.is_set():
            try:
                self._listen()
            except psycopg.Error as exc:
                # A connection that had been listening starts a new outage.
                failing = failing and not self._listening.is_set()
                # The kind only: a driver message can quote connection details.
                log.log(
                    logging.DEBUG if failing else logging.WARNING,
                    "promotion listener lost its connection (%s); retrying every %.0f s, "
                    "the registry poll covers the gap",
                    type(exc).__name__,
                    self._reconnect_s,
                )
                failing = True
            self._listening.clear()
            self._stopping.wait(self._reconnect_s)

    def _listen(self) -> None:
        with psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=self._connect_timeout_s,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        ) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self._listening.set()
            log.info("listening for promotions (PostgreSQL NOTIFY %s)", CHANNEL)
            while not self._stopping.is_set():
                # A short timeout so stop() is prompt; notifications wake it at once.
                for notice in conn.notifies(timeout=1.0):
                    self._on_promotion(notice.payload)
