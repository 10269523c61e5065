"""deploy/build_images.sh and the build context: what a real build needs, checked without one.

The build itself (podman, minutes) runs in .ci/run as its own step, not here.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCRIPT = DEPLOY / "build_images.sh"


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""

    def regex(pattern: str) -> re.Pattern[str]:
        out = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?)", pattern.strip("/")):
            out += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                part, re.escape(part)
            )
        return re.compile(out)

    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negated = raw.startswith("!")
        if any(regex(raw.removeprefix("!")).fullmatch(c) for c in candidates):
            excluded = not negated
    return excluded


def copied_sources(dockerfile: Path) -> list[str]:
    sources = []
    for line in re.findall(r"^COPY (?!--from)(.+)$", dockerfile.read_text(), re.M):
        *srcs, _dest = line.split()
        sources += srcs
    return sources


@pytest.mark.parametrize("dockerfile", sorted(DEPLOY.glob("*.Dockerfile")), ids=lambda p: p.name)
def test_every_copied_path_exists_and_reaches_the_build_context(dockerfile: Path) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = copied_sources(dockerfile)
    assert "service" in sources or "training" in sources
    for source in sources:
        assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source}: no such path"
        assert not dockerignore_excludes(source, patterns), f"{source} is in .dockerignore"
    # ...and what must never be sent to a builder stays out.
    for local in (".venv", ".git", "bundles", "runs", "var", "secrets", ".env"):
        assert dockerignore_excludes(local, patterns), f"{local} reaches the build context"


def test_dockerignore_matcher_follows_docker_rules() -> None:
    assert dockerignore_excludes("bundles/x/model.onnx", ["bundles"])
    assert not dockerignore_excludes("training/runs/loop.py", ["runs"])  # anchored at the root
    assert dockerignore_excludes("service/__pycache__/a.pyc", ["**/__pycache__"])
    assert not dockerignore_excludes("deploy/entrypoint.py", ["deploy", "!deploy/entrypoint.py"])


def test_the_dockerfiles_take_the_base_and_mirror_as_build_arguments() -> None:
    for dockerfile in DEPLOY.glob("*.Dockerfile"):
        text = dockerfile.read_text()
        # build_images.sh passes its base through PYTHON_IMAGE: no second Dockerfile.
        assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm$", text, re.M)
        assert text.count("FROM ${PYTHON_IMAGE}") == 2
        assert "ARG PIP_INDEX_URL=" in text
        assert "/opt/venv/bin/pip check" in text
    training = (DEPLOY / "training.Dockerfile").read_text()
    # torch alone from its index: a local one-package index (build_images.sh) must suffice.
    assert re.search(
        r"pip install --no-deps --index-url \"\$\{TORCH_INDEX_URL\}\" torch==", training
    )


def test_build_script_parses_and_documents_moving_images() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0
    result = subprocess.run(
        ["bash", str(SCRIPT), "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    for option in ("--save", "--push", "--base", "--training", "--gpu", "--torch-wheel"):
        assert option in result.stdout
    wrong = subprocess.run(
        ["bash", str(SCRIPT), "--no-such-option"], capture_output=True, text=True, check=False
    )
    assert wrong.returncode == 2 and "unknown option" in wrong.stderr


def test_the_gpu_onnxruntime_requirement_is_the_same_everywhere() -> None:
    # onnxruntime-gpu trails onnxruntime on PyPI (1.32.0 has no -gpu release): the first real
    # build of the GPU image failed on a pin copied from the CPU one.
    found = {
        "docker-compose.yml": re.findall(
            r"DEPLOY_ONNXRUNTIME_GPU:-([^}]+)\}", (ROOT / "docker-compose.yml").read_text()
        ),
        ".env.example": re.findall(
            r"^DEPLOY_ONNXRUNTIME_GPU=(.+)$", (DEPLOY / ".env.example").read_text(), re.M
        ),
        "build_images.sh": re.findall(r"DEPLOY_ONNXRUNTIME_GPU:-([^}]+)\}", SCRIPT.read_text()),
        "service.Dockerfile": re.findall(
            r'ONNXRUNTIME="([^"]+)"', (DEPLOY / "service.Dockerfile").read_text()
        ),
    }
    pins = {pin for pins in found.values() for pin in pins}
    assert all(found.values()), found
    assert len(pins) == 1, found
    assert re.fullmatch(r"onnxruntime-gpu\[cuda,cudnn\]==[0-9.]+", pins.pop())
