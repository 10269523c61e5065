"""`notespace serve` — the entry point the container runs — starts and serves over HTTP."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from tests.conftest import free_port


def test_notespace_serve_starts_and_embeds(tiny_bundle: Path) -> None:
    exe = shutil.which("notespace")
    assert exe, "the notespace console script is not installed"
    port = free_port()
    env = {
        **os.environ,
        "NOTESPACE_BUNDLE_PATH": str(tiny_bundle),
        "NOTESPACE_INTRA_OP_THREADS": "1",
    }
    proc = subprocess.Popen(
        [exe, "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"{url}/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "service did not become ready"
            time.sleep(0.2)
        r = httpx.post(f"{url}/embed", json={"notes": ["chest pain"]})
        assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 32
    finally:
        proc.terminate()
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells why.
        assert proc.wait(30) in (0, -15)


def test_serve_with_missing_bundle_fails_clearly(tmp_path: Path) -> None:
    exe = shutil.which("notespace")
    assert exe
    env = {**os.environ, "NOTESPACE_BUNDLE_PATH": str(tmp_path / "absent")}
    proc = subprocess.run(
        [exe, "serve", "--port", str(free_port())], env=env, capture_output=True, timeout=60
    )
    assert proc.returncode != 0
    assert b"bundle directory not found" in proc.stdout + proc.stderr
