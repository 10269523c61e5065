"""The service never imports training, torch or transformers (its image has none of them)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

FORBIDDEN = {"training", "torch", "transformers", "sentence_transformers"}
SERVICE = Path(__file__).resolve().parents[1] / "service"


def test_no_forbidden_imports_in_service_source() -> None:
    offenders = []
    for path in SERVICE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_serving_modules_load_without_torch() -> None:
    code = (
        "import sys, service.app, service.cli, service.bundle;"
        "bad = {'torch', 'transformers', 'training'} & set(sys.modules);"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
