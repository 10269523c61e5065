"""The layers and their import rules (docs/architecture.md, "Layers"):

* the service never imports training, torch or transformers (its image has none of them);
* api/ talks to the orchestration layer, never to registry/, index/ or inference/;
* below the orchestration layer nothing takes the whole `Settings` (small configs instead),
  and no layer imports one above it;
* training uses the service only through the named contract modules;
* Ray (the optional [ray] extra) is imported by one module, which only `index rebuild --ray`
  imports, so the serving path loads without it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"training", "torch", "transformers", "sentence_transformers"}
SERVICE = ROOT / "service"

# What each package of the service may import from the service. Every module of a package may
# import its own package; the foundation (errors, bundle, metrics) imports nothing above it.
FOUNDATION = ("service.errors", "service.bundle", "service.metrics", "service.paired_intervals")
ALLOWED: dict[str, tuple[str, ...]] = {
    "service.api": ("service.orchestration", "service.settings", *FOUNDATION),
    "service.orchestration": (
        "service.inference",
        "service.index",
        "service.registry",
        "service.settings",
        *FOUNDATION,
    ),
    "service.inference": FOUNDATION,
    "service.registry": ("service.index", *FOUNDATION),
    "service.index": (),
    "service.settings": ("service.inference.config",),
    "service.errors": (),
    "service.bundle": (),
    "service.metrics": (),
    "service.paired_intervals": (),
}
# The entry points (service.app, service.server, service.cli) wire every layer.

# The training -> service contract: a bundle is written and verified through service.bundle,
# embedded exactly as served through the inference runtime, registered through the CLI seam.
TRAINING_CONTRACT = {
    "service.bundle",
    "service.paired_intervals",
    "service.errors",
    "service.inference.config",
    "service.inference.head",
    "service.inference.runtime",
    "service.inference.runtime_choice",
    "service.inference.tokenize",
    "service.cli.common",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[str]:
    """Every absolute module a file imports, at any depth (function-level imports too)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_no_forbidden_imports_in_service_source() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in SERVICE.rglob("*.py")
        for name in imports(path)
        if name.split(".")[0] in FORBIDDEN
    ]
    assert offenders == []


def test_each_layer_imports_only_the_layers_below_it() -> None:
    offenders = []
    for path in SERVICE.rglob("*.py"):
        module = module_name(path)
        layer = next((p for p in ALLOWED if within(module, p)), None)
        if layer is None:
            continue  # an entry point
        allowed = (layer, *ALLOWED[layer])
        offenders += [
            f"{module} imports {name}"
            for name in imports(path)
            if within(name, "service") and not any(within(name, a) for a in allowed)
        ]
    assert offenders == []


def test_the_api_never_reaches_past_the_orchestration_layer() -> None:
    below = ("service.registry", "service.index", "service.inference")
    offenders = [
        f"{module_name(path)} imports {name}"
        for path in (SERVICE / "api").rglob("*.py")
        for name in imports(path)
        if any(within(name, b) for b in below)
    ]
    assert offenders == []


def test_training_uses_the_service_only_through_its_contract_modules() -> None:
    offenders = sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "training").rglob("*.py")
        for name in imports(path)
        if within(name, "service") and name not in TRAINING_CONTRACT
    )
    assert offenders == []


def test_serving_modules_load_without_torch() -> None:
    code = (
        "import sys, service.app, service.cli, service.bundle;"
        "bad = {'torch', 'transformers', 'training'} & set(sys.modules);"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# The one module that imports Ray, and the one that may import it (inside the command).
RAY_MODULE = "service.orchestration.ray_rebuild"
RAY_IMPORTERS = {RAY_MODULE, "service.orchestration.rebuild"}


def test_ray_is_imported_by_its_own_module_only() -> None:
    offenders = sorted(
        f"{module_name(path)} imports {name}"
        for path in SERVICE.rglob("*.py")
        for name in imports(path)
        if (within(name, "ray") and module_name(path) != RAY_MODULE)
        or (within(name, RAY_MODULE) and module_name(path) not in RAY_IMPORTERS)
    )
    assert offenders == []


def test_serving_modules_load_without_ray() -> None:
    # With Ray installed (the dev extra has it), the serving path must still not load it.
    code = (
        "import sys, service.app, service.server, service.cli, service.orchestration.rebuild;"
        "bad = {'ray', 'service.orchestration.ray_rebuild'} & set(sys.modules);"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
