"""docker-compose.yml: validated by the compose CLI for every profile, and its promises checked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
PROFILES = ["", "cpu", "gpu", "tls", "replicated", "train", "cli"]


def compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) if present, else a standalone `docker-compose`."""
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.fixture(scope="module")
def compose() -> list[str]:
    command = compose_command()
    if command is None:
        pytest.skip(
            "no compose CLI: neither the `docker compose` plugin nor `docker-compose` is "
            "installed (apt-get install docker-compose, or Docker's compose plugin)"
        )
    return command


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p or "default")
def test_compose_config_validates(compose: list[str], profile: str, tmp_path: Path) -> None:
    password = tmp_path / "db_password"
    password.write_text("x" * 32)
    env = {
        **os.environ,
        "DEPLOY_ENV_FILE": str(ENV_EXAMPLE),
        "DEPLOY_DB_PASSWORD_FILE": str(password),
        "COMPOSE_PROFILES": profile,
    }
    args = [*compose, "-f", str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE)]
    if profile:
        args += ["--profile", profile]
    result = subprocess.run(
        [*args, "config"], capture_output=True, text=True, env=env, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert {"db", "migrate"} <= set(resolved["services"])
    if profile:
        assert any(profile in (svc.get("profiles") or []) for svc in resolved["services"].values())


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # anchors and `<<` merges resolved


def test_database_has_volume_healthcheck_and_no_password(spec: dict[str, Any]) -> None:
    db = spec["services"]["db"]
    assert "pgdata:/var/lib/postgresql/data" in db["volumes"]
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert db["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"
    assert "db_password" in db["secrets"]
    assert "ports" not in db  # reachable from the internal network only
    assert spec["networks"]["backend"]["internal"] is True
    # No password, default or otherwise, anywhere in the file.
    text = COMPOSE_FILE.read_text()
    assert not re.search(r"^\s*POSTGRES_PASSWORD\s*:", text, re.M)
    assert "NOTESPACE_DATABASE_URL" not in text


@pytest.mark.parametrize("name", ["service", "service-gpu"])
def test_service_waits_restarts_and_is_confined(spec: dict[str, Any], name: str) -> None:
    svc = spec["services"][name]
    assert svc["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    assert "/ready" in " ".join(svc["healthcheck"]["test"])
    assert svc["restart"] == "unless-stopped"
    assert svc["user"] == "10001:10001"
    assert svc["read_only"] is True
    assert svc["cap_drop"] == ["ALL"]
    assert {"cpus", "memory"} <= set(svc["deploy"]["resources"]["limits"])
    volumes = " ".join(svc["volumes"])
    assert "/bundles:ro" in volumes and "index:/var/lib/notespace/index" in volumes
    (port,) = svc["ports"]
    assert port.startswith("${DEPLOY_BIND_ADDRESS:-127.0.0.1}:")
    assert svc["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"


def test_cpu_and_gpu_are_alternatives(spec: dict[str, Any]) -> None:
    services = spec["services"]
    assert services["service"]["profiles"] == ["cpu"]
    assert services["service"]["environment"]["NOTESPACE_DEVICE"] == "cpu"
    gpu = services["service-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["environment"]["NOTESPACE_DEVICE"] == "cuda"
    assert "onnxruntime-gpu" in gpu["build"]["args"]["ONNXRUNTIME"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]


def test_replicated_profile_runs_replicas_behind_the_proxy(spec: dict[str, Any]) -> None:
    services = spec["services"]
    replicated = services["service-replicated"]
    assert replicated["profiles"] == ["replicated"]
    assert replicated["deploy"]["replicas"] == "${DEPLOY_REPLICAS:-3}"
    # Reached through the proxy only: no host port a second replica would collide on.
    assert replicated["ports"] == []
    assert "replicated" in services["tls"]["profiles"]
    assert replicated["networks"]["frontend"]["aliases"] == ["notespace"]  # nginx's upstream
    # Shared quotas are required, and no two replicas write one FAISS snapshot folder.
    assert replicated["environment"]["NOTESPACE_QUOTA_STORE"] == "database"
    assert "/var/lib/notespace/index" in replicated["tmpfs"]
    assert not any("index:" in v for v in replicated["volumes"])
    assert replicated["depends_on"] == services["service"]["depends_on"]
    assert replicated["read_only"] is True and replicated["user"] == "10001:10001"


def test_migrate_is_one_shot_and_train_runs_the_training_cli(spec: dict[str, Any]) -> None:
    migrate = spec["services"]["migrate"]
    assert migrate["command"] == ["notespace", "db", "upgrade"]
    assert migrate["restart"] == "no"
    train = spec["services"]["train"]
    assert train["profiles"] == ["train"]
    assert train["build"]["dockerfile"] == "deploy/training.Dockerfile"
    assert any(v.endswith(":/corpus:ro") for v in train["volumes"])


def _documented(text: str) -> set[str]:
    return set(re.findall(r"^#?\s*(NOTESPACE_[A-Z0-9_]+)=", text, re.M))


def test_env_example_documents_every_setting_and_only_settings() -> None:
    documented = _documented(ENV_EXAMPLE.read_text())
    settings = {f"NOTESPACE_{name.upper()}" for name in Settings.model_fields}
    assert settings - documented == set(), "settings missing from deploy/.env.example"
    assert documented - settings == set(), "deploy/.env.example names unknown settings"


def test_env_example_settings_are_valid() -> None:
    values = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.startswith("NOTESPACE_")
    )
    # The image listens on 0.0.0.0; the example's values must build a valid Settings there.
    Settings(**{k.removeprefix("NOTESPACE_").lower(): v for k, v in values.items()})


def test_compose_without_its_env_file_says_what_to_do(compose: list[str], tmp_path: Path) -> None:
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DEPLOY_"))}
    result = subprocess.run(
        [*compose, "config"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "cp deploy/.env.example .env" in result.stdout + result.stderr
