"""Fuzz the live service from its OpenAPI schema with thousands of generated cases.

    python bench/fuzz.py --max-examples 300

Starts the service on a tiny encoder with auth on, runs schemathesis (checks: no 5xx, responses
conform to their schema) over every operation, and prints its summary.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.security.test_fuzz import fuzz_service
from tests.support.tiny_model import build_tiny_encoder
from training.export import export_bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-examples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="notespace-fuzz-"))
    bundle = work / "bundle"
    export_bundle(build_tiny_encoder(work / "base"), bundle, name="tiny", max_tokens=32)
    code, output = fuzz_service(bundle, args.max_examples, args.seed)
    print(output[output.find("SUMMARY") - 40 :] if "SUMMARY" in output else output[-3000:])
    sys.exit(code)


if __name__ == "__main__":
    main()
