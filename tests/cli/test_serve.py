"""`notespace serve` — the entry point the container runs — starts and serves over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port, migrated_sqlite_url

# The console script installed beside the interpreter running the tests.
NOTESPACE = str(Path(sys.executable).with_name("notespace"))


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            if httpx.get(f"{url}/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "service did not become ready"
        time.sleep(0.2)


def test_notespace_serve_starts_and_embeds(tiny_bundle: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "NOTESPACE_BUNDLE_PATH": str(tiny_bundle),
        "NOTESPACE_INTRA_OP_THREADS": "1",
        "NOTESPACE_DATABASE_URL": migrated_sqlite_url(),
    }
    proc = subprocess.Popen(
        [NOTESPACE, "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(proc, url)
        r = httpx.post(f"{url}/embed", json={"notes": ["chest pain"]})
        assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 32
    finally:
        proc.terminate()
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells why.
        assert proc.wait(30) in (0, -15)


def test_serve_with_missing_bundle_fails_clearly(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "NOTESPACE_BUNDLE_PATH": str(tmp_path / "absent"),
        "NOTESPACE_DATABASE_URL": migrated_sqlite_url(),
    }
    proc = subprocess.run(
        [NOTESPACE, "serve", "--port", str(free_port())], env=env, capture_output=True, timeout=60
    )
    assert proc.returncode != 0
    assert b"bundle directory not found" in proc.stdout + proc.stderr


def test_serve_refuses_an_unmigrated_database(tiny_bundle: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "NOTESPACE_BUNDLE_PATH": str(tiny_bundle),
        "NOTESPACE_DATABASE_URL": f"sqlite:///{tmp_path}/empty.db",
    }
    proc = subprocess.run(
        [NOTESPACE, "serve", "--port", str(free_port())], env=env, capture_output=True, timeout=60
    )
    assert proc.returncode != 0
    assert b"run `notespace db upgrade` first" in proc.stdout + proc.stderr
