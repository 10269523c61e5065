"""Shared fixtures: a tiny encoder exported through the project's own export code, live servers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from service.app import create_app
from service.settings import Settings
from tests.tiny_model import build_tiny_encoder

TINY_WINDOW_TOKENS = 32  # small windows so short test notes exercise chunking


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-base") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_bundle(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.export import export_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    export_bundle(tiny_base, out, name="tiny", version="1", max_tokens=TINY_WINDOW_TOKENS)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """A real uvicorn server on a loopback port, in a thread of the test process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=settings.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{settings.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


def make_settings(bundle: Path, **overrides: Any) -> Settings:
    return Settings(bundle_path=bundle, port=free_port(), intra_op_threads=1, **overrides)


@pytest.fixture(scope="session")
def server(tiny_bundle: Path) -> Iterator[LiveServer]:
    with LiveServer(
        make_settings(tiny_bundle, max_notes_per_request=8, max_chars_per_note=5000)
    ) as live:
        yield live


@pytest.fixture()
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c
