"""The images' commands, run directly: the entrypoint, migrations, serve, the training CLI.

The containers run `python /app/deploy/entrypoint.py notespace ...`; these tests run the same
entrypoint and console script on this machine, from a directory outside the source tree (as in
the image) with NOTESPACE_ALEMBIC_DIR naming the migrations, and with torch and transformers
made unimportable wherever the lean service image would lack them.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from urllib.parse import unquote

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import free_port, scratch_postgres_database

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "deploy" / "entrypoint.py"
NOTESPACE = Path(sys.executable).with_name("notespace")
# What the service image does not install (deploy/requirements-service.txt).
TRAINING_ONLY = ["torch", "transformers", "sentence_transformers", "onnx", "onnxscript", "sklearn"]

BLOCKER = f"""
import importlib.abc, sys
_BLOCKED = {TRAINING_ONLY!r}
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: lean image)")
        return None
sys.meta_path.insert(0, _Block())
"""


def load_entrypoint() -> ModuleType:
    spec = importlib.util.spec_from_file_location("notespace_entrypoint", ENTRYPOINT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def lean_env(tmp_path: Path) -> dict[str, str]:
    """An environment in which torch & co. cannot be imported (a sitecustomize blocks them)."""
    blocker = tmp_path / "lean-site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTESPACE_", "POSTGRES_"))}
    env["PYTHONPATH"] = str(blocker)
    env["NOTESPACE_ALEMBIC_DIR"] = str(ROOT / "alembic")
    env["NO_COLOR"] = "1"
    return env


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


# -- the entrypoint: database URL from the password file ------------------------------------


def test_entrypoint_builds_the_url_from_a_password_file(tmp_path: Path) -> None:
    entry = load_entrypoint()
    secret = tmp_path / "db_password"
    password = "p@ss:w/rd%?#" + "x" * 12
    secret.write_text(password + "\n")
    env = entry.prepare_environment(
        {"POSTGRES_PASSWORD_FILE": str(secret), "POSTGRES_USER": "ops", "POSTGRES_DB": "ns"}
    )
    url = make_url(env["NOTESPACE_DATABASE_URL"])
    assert (url.drivername, url.username, url.host, url.port, url.database) == (
        "postgresql+psycopg",
        "ops",
        "db",
        5432,
        "ns",
    )
    assert url.password == password  # special characters survive the round trip
    assert password not in env["NOTESPACE_DATABASE_URL"]  # ...because they are quoted
    assert unquote(env["NOTESPACE_DATABASE_URL"]).count(password) == 1


def test_entrypoint_leaves_an_explicit_url_and_sqlite_default_alone(tmp_path: Path) -> None:
    entry = load_entrypoint()
    explicit = {"NOTESPACE_DATABASE_URL": "sqlite:////data/x.db"}
    assert entry.prepare_environment(explicit)["NOTESPACE_DATABASE_URL"] == "sqlite:////data/x.db"
    assert "NOTESPACE_DATABASE_URL" not in entry.prepare_environment({})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"POSTGRES_PASSWORD": "short"}, "shorter than 12"),
        ({"POSTGRES_PASSWORD_FILE": "/nonexistent/pw"}, "cannot read POSTGRES_PASSWORD_FILE"),
        ({"POSTGRES_PASSWORD_FILE": "/x", "POSTGRES_PASSWORD": "y" * 20}, "not both"),
    ],
)
def test_entrypoint_refuses_bad_passwords(env: dict[str, str], message: str) -> None:
    entry = load_entrypoint()
    with pytest.raises(entry.EntrypointError, match=message):
        entry.prepare_environment(env)


def test_entrypoint_exits_with_a_message_and_never_echoes_the_password(
    lean_env: dict[str, str], tmp_path: Path
) -> None:
    result = run(
        [sys.executable, str(ENTRYPOINT), "true"],
        {**lean_env, "POSTGRES_PASSWORD": "tiny-secret"},
        tmp_path,
    )
    assert result.returncode == 2
    assert "shorter than 12" in result.stderr
    assert "tiny-secret" not in result.stderr + result.stdout


# -- the lean image's CLI: no torch, no transformers ----------------------------------------


def test_cli_and_app_import_without_training_dependencies(
    lean_env: dict[str, str], tmp_path: Path
) -> None:
    probe = run(
        [
            sys.executable,
            "-c",
            "import torch",
        ],
        lean_env,
        tmp_path,
    )
    assert probe.returncode != 0 and "blocked: lean image" in probe.stderr  # the block works
    result = run([sys.executable, "-c", "import service.app, service.cli"], lean_env, tmp_path)
    assert result.returncode == 0, result.stderr
    help_ = run([str(NOTESPACE), "--help"], lean_env, tmp_path)
    assert help_.returncode == 0, help_.stderr
    for command in ("serve", "db", "models", "index", "train", "export"):
        assert command in help_.stdout
    train_help = run([str(NOTESPACE), "train", "mlm", "--help"], lean_env, tmp_path)
    assert train_help.returncode == 0, train_help.stderr
    export = run([str(NOTESPACE), "export", "--out", str(tmp_path / "b")], lean_env, tmp_path)
    assert export.returncode != 0
    assert "training extra" in export.stdout + export.stderr


def test_training_cli_runs_in_the_full_environment(tmp_path: Path) -> None:
    env = {**os.environ, "NOTESPACE_ALEMBIC_DIR": str(ROOT / "alembic"), "NO_COLOR": "1"}
    for args in (["train", "--help"], ["export", "--help"]):
        result = run([sys.executable, str(ENTRYPOINT), str(NOTESPACE), *args], env, tmp_path)
        assert result.returncode == 0, result.stderr


# -- migrate + serve, as the compose services run them, against PostgreSQL ------------------


@pytest.mark.postgres
@pytest.mark.slow  # a real server start (~10 s on two cores)
def test_migrate_then_serve_through_the_entrypoint(
    lean_env: dict[str, str], tiny_bundle: Path, tmp_path: Path
) -> None:
    with scratch_postgres_database() as admin_url:
        url = make_url(admin_url)
        secret = tmp_path / "db_password"
        secret.write_text("local-trust-auth-ignores-it\n")  # the test server uses trust auth
        env = {
            **lean_env,
            "POSTGRES_PASSWORD_FILE": str(secret),
            "POSTGRES_USER": url.username or "postgres",
            "POSTGRES_HOST": url.host or "127.0.0.1",
            "POSTGRES_PORT": str(url.port or 5432),
            "POSTGRES_DB": url.database or "",
            "NOTESPACE_BUNDLE_PATH": str(tiny_bundle),
            "NOTESPACE_INDEX_DIR": str(tmp_path / "index"),
            "NOTESPACE_INTRA_OP_THREADS": "1",
        }
        entry = [sys.executable, str(ENTRYPOINT)]

        # The `migrate` service's command.
        migrated = run([*entry, str(NOTESPACE), "db", "upgrade"], env, tmp_path)
        assert migrated.returncode == 0, migrated.stderr
        current = run([*entry, str(NOTESPACE), "db", "current"], env, tmp_path)
        database_line, code_line = current.stdout.splitlines()
        assert database_line.split()[-1] == code_line.split()[-1] != "(empty)"

        # The `service` command (the image sets 0.0.0.0; loopback here).
        port = free_port()
        serve_env = {**env, "NOTESPACE_HOST": "127.0.0.1", "NOTESPACE_PORT": str(port)}
        server = subprocess.Popen(
            [*entry, str(NOTESPACE), "serve", "--log-level", "warning"],
            env=serve_env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            status = None
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    status = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code
                except httpx.TransportError:
                    status = None
                if status == 200:
                    break
                time.sleep(0.3)
            assert status == 200, server.stdout.read() if server.poll() is not None else status
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            assert "notespace_requests_total" in metrics
            listed = run([*entry, str(NOTESPACE), "models", "list"], env, tmp_path)
            assert listed.returncode == 0 and "tiny@1" in listed.stdout
        finally:
            server.send_signal(signal.SIGTERM)  # what `docker compose stop` sends
            try:
                code = server.wait(30)
            finally:
                if server.poll() is None:
                    server.kill()
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert code in (0, -signal.SIGTERM), code
