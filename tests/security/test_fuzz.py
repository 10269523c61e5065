"""Schemathesis fuzzing from the OpenAPI schema over every endpoint, auth on: no 5xx, and no
response that breaks its own schema. `bench/fuzz.py` runs the same with thousands of cases."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from service.registry.database import make_engine
from service.registry.keys import KeyScope, KeyStore
from tests.conftest import LiveServer, make_settings

pytestmark = pytest.mark.slow
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))


def run_schemathesis(url: str, key: str, max_examples: int, seed: int = 1) -> tuple[int, str]:
    proc = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{url}/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--max-examples",
            str(max_examples),
            "--seed",
            str(seed),
            "--continue-on-failure",
            "--request-timeout",
            "30",
            "-H",
            f"Authorization: Bearer {key}",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    return proc.returncode, proc.stdout + proc.stderr


def fuzz_service(bundle: Path, max_examples: int, seed: int = 1) -> tuple[int, str]:
    """Serve `bundle` with auth on and fuzz it with a key holding every scope."""
    settings = make_settings(bundle, auth="on", warmup=False, max_notes_per_request=16)
    key = (
        KeyStore(make_engine(settings.database_url))
        .create("fuzzer", [s.value for s in KeyScope], "fuzz")
        .key
    )
    with LiveServer(settings) as live:
        return run_schemathesis(live.url, key, max_examples, seed)


def test_fuzz_every_endpoint(tiny_bundle: Path) -> None:
    code, output = fuzz_service(tiny_bundle, max_examples=25)
    assert code == 0, output[-4000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", output)
    assert generated is not None, output[-2000:]
    assert int(generated.group(1)) == int(generated.group(2)) >= 300
