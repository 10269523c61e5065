"""The documented maximum request on the real model: typical MTSamples notes, as many as the
default limits allow, sent to an idle service; then one note more.

    python bench/admission.py --bundle bundles/all-MiniLM-L6-v2 [--runtime onnxruntime]

Prints how many notes and tokens the maximal request holds, its status and time for /embed and
/notes, and the 413 (with its advice) for one note more. Before issue 14 the maximal request got
`503 ... retry shortly` on every try whenever its own work exceeded half the deadline.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ServiceProcess, fresh_service_env, load_notes

from service.bundle import load_bundle
from service.inference.tokenize import NoteTokenizer
from service.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, default=Path("bundles/all-MiniLM-L6-v2"))
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    settings = Settings()  # the documented defaults
    tokenizer = NoteTokenizer(
        args.bundle / "tokenizer.json",
        max_tokens=load_bundle(args.bundle).manifest.max_tokens,
        overlap_tokens=settings.window_overlap_tokens,
        max_windows_per_note=settings.max_windows_per_note,
    )
    notes: list[str] = []
    total = 0
    for text in load_notes(limit=2000, seed=0):
        cost = tokenizer.tokenize([text], "chunk")[0].window_tokens
        if total + cost > settings.request_token_limit or len(notes) == 256:
            over = text
            break
        notes.append(text)
        total += cost
    print(
        f"maximal request: {len(notes)} MTSamples notes, {total} of "
        f"{settings.request_token_limit} tokens (max {settings.max_notes_per_request} notes)"
    )
    env = fresh_service_env(
        "admission",
        NOTESPACE_RUNTIME=args.runtime,
        NOTESPACE_INTRA_OP_THREADS=str(args.threads),
    )
    with (
        ServiceProcess(args.bundle, **env) as svc,
        httpx.Client(base_url=svc.url, timeout=600) as c,
    ):
        print("runtime:", c.get("/info").json()["model"]["providers"])
        c.post("/embed", json={"notes": notes[:4]})  # the throughput estimate starts here
        for path, body in (
            ("/embed", {"notes": notes}),
            ("/notes", {"notes": [{"id": f"n{i}", "text": t} for i, t in enumerate(notes)]}),
        ):
            started = time.perf_counter()
            r = c.post(path, json=body)
            print(f"{path}: {r.status_code} in {time.perf_counter() - started:.1f} s")
        r = c.post("/embed", json={"notes": [*notes, over]})
        print(f"one note more: {r.status_code} {r.json()['error']['message']}")


if __name__ == "__main__":
    main()
