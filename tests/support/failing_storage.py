"""Storage that fails on purpose, for the storage-failure tests and bench/hardening.py: a
private PostgreSQL server to stop and start at will (never the machine's shared one), and a
small filesystem to fill up or make read-only (a tmpfs; needs root)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.support.crash_harness import CrashState
from tests.support.tiny_model import synthetic_corpus


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        raise RuntimeError(reason)  # CI must run these for real
    pytest.skip(reason)


class ThrowawayPostgres:
    """initdb + pg_ctl on a temporary directory and a free port; as the `postgres` user when
    run as root (initdb refuses root)."""

    def __init__(self) -> None:
        bin_dir = _postgres_bin()
        if bin_dir is None:
            _unavailable("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
        assert bin_dir is not None
        self._bin = bin_dir
        self.port = free_port()
        self._root = Path(tempfile.mkdtemp(prefix="notespace-pg-"))
        self._data = self._root / "data"
        self._log = self._root / "server.log"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self._root, "postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self._run(
            "initdb",
            "-D",
            str(self._data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self._root} -c listen_addresses=127.0.0.1"
        self._run(
            "pg_ctl",
            "-D",
            str(self._data),
            "-l",
            str(self._log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "immediate") -> None:
        """`immediate`: the server dies without a checkpoint, as in a crash or a power cut;
        on the next start PostgreSQL recovers from its write-ahead log."""
        self._run("pg_ctl", "-D", str(self._data), "-m", mode, "-w", "stop")

    def close(self) -> None:
        with suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self._root, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._as_user, str(self._bin / tool), *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def __enter__(self) -> ThrowawayPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SmallFilesystem:
    """A tmpfs of `size_kb`, to fill up (`fill`, `free`) or flip read-only (`read_only`)."""

    def __init__(self, size_kb: int) -> None:
        if os.geteuid() != 0:
            _unavailable("mounting a small filesystem needs root")
        self.path = Path(tempfile.mkdtemp(prefix="notespace-fs-"))
        self.size_kb = size_kb
        try:
            subprocess.run(
                [
                    "mount",
                    "-t",
                    "tmpfs",
                    "-o",
                    f"size={size_kb}k,mode=0777",
                    "tmpfs",
                    str(self.path),
                ],
                check=True,
                capture_output=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            self.path.rmdir()
            _unavailable(f"cannot mount a tmpfs here: {exc}")
        self._filler = self.path / ".filler"

    def fill(self) -> None:
        """Take every free byte (until ENOSPC)."""
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for chunk in (1 << 16, 1 << 12, 1 << 9, 1):
                with suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * chunk)
        finally:
            os.close(fd)

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)

    def read_only(self, on: bool = True) -> None:
        flag = "ro" if on else "rw"
        subprocess.run(["mount", "-o", f"remount,{flag}", str(self.path)], check=True)

    def close(self) -> None:
        for _ in range(50):  # a server thread may still hold a file open for a moment
            done = subprocess.run(["umount", str(self.path)], capture_output=True)
            if done.returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
        shutil.rmtree(self.path, ignore_errors=True)


@contextmanager
def small_filesystem(size_kb: int) -> Iterator[SmallFilesystem]:
    fs = SmallFilesystem(size_kb)
    try:
        yield fs
    finally:
        fs.close()


def index_through_outage(
    url: str, pg: ThrowawayPostgres, state: CrashState, *, outage_s: float
) -> list[tuple[int, float, bool]]:
    """Index notes while PostgreSQL is stopped (immediate: as a crash) and started again;
    returns (status, seconds, had Retry-After) per write, until writes succeed again.
    `state` collects what was acknowledged (tests.support.crash_harness.verify checks it)."""
    tag = f"o{state.cycles}"
    texts = synthetic_corpus(50, seed=state.cycles)
    outcomes: list[tuple[int, float, bool]] = []
    stop, down, recovered = threading.Event(), threading.Event(), threading.Event()

    def writer() -> None:
        n = 0
        with httpx.Client(base_url=url, timeout=60) as client:
            while not stop.is_set():
                batch = [
                    {"id": f"{tag}-{n + j}", "text": f"{texts[(n + j) % 50]} marker {tag} {n + j}"}
                    for j in range(3)
                ]
                n += 3
                started = time.perf_counter()
                try:
                    r = client.post("/notes", json={"notes": batch})
                except httpx.TransportError:
                    r = None
                seconds = time.perf_counter() - started
                if r is None:
                    outcomes.append((0, seconds, False))
                else:
                    outcomes.append((r.status_code, seconds, "retry-after" in r.headers))
                if r is not None and r.status_code == 200:
                    state.acked.update({b["id"]: b["text"] for b in batch})
                    if down.is_set():
                        recovered.set()
                else:  # not acknowledged: it may or may not have been committed
                    state.unacked.update({b["id"]: b["text"] for b in batch})

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.7)
        pg.stop("immediate")
        down.set()
        time.sleep(outage_s)
        pg.start()
        assert recovered.wait(30), "the service did not recover by itself"
    finally:
        stop.set()
        thread.join(60)
    state.cycles += 1
    return outcomes
