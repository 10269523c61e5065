"""The service and the registry: start-up choice, /models, hot swap under load, failed loads."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import LiveServer, make_settings, registry_with_versions

NOTES = ["patient admitted with chest pain", "ct scan normal, plan review in clinic"]


def test_empty_registry_registers_and_promotes_bundle_path(
    database_url: str, tiny_bundle: Path
) -> None:
    settings = make_settings(tiny_bundle, database_url=database_url, warmup=False)
    with LiveServer(settings) as live, live.client() as c:
        body = c.get("/models").json()
        assert body["serving"] == "tiny@1"
        (row,) = body["models"]
        assert (row["status"], row["serving"], row["registered_by"]) == (
            "active",
            True,
            "notespace serve (bundle_path fallback)",
        )
        assert c.get(f"/models/{row['id']}").json()["ref"] == "tiny@1"
        assert c.get("/models/tiny@1").json()["id"] == row["id"]
        assert c.get("/models/tiny@7").status_code == 404


def test_promote_swaps_model_under_load_without_failures(
    database_url: str, tiny_bundle: Path, tiny_bundle_v2: Path
) -> None:
    registry = registry_with_versions(database_url, tiny_bundle, tiny_bundle_v2)
    settings = make_settings(tiny_bundle, database_url=database_url)
    with LiveServer(settings) as live:
        seen: list[str] = []
        failures: list[str] = []
        stop = threading.Event()

        def load() -> None:
            with live.client() as c:
                while not stop.is_set():
                    r = c.post("/embed", json={"notes": NOTES})
                    if r.status_code != 200:
                        failures.append(f"{r.status_code}")
                        continue
                    body = r.json()
                    assert r.headers["x-notespace-model"] == "tiny@" + body["model"]["version"]
                    seen.append(body["model"]["version"])

        workers = [threading.Thread(target=load) for _ in range(4)]
        for w in workers:
            w.start()
        time.sleep(0.5)
        with live.client() as admin:
            r = admin.post("/models/tiny@2/promote")
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "active" and r.json()["serving"] is True
        time.sleep(0.5)
        stop.set()
        for w in workers:
            w.join()
    assert failures == []
    assert "1" in seen and "2" in seen
    # Once the switch happened, no response came from the old model again.
    assert seen[-1] == "2"
    first_v2 = seen.index("2")
    assert seen[first_v2:].count("1") <= len(workers)  # only requests already in flight
    assert registry.active("tiny").ref == "tiny@2"  # type: ignore[union-attr]


def test_failed_load_keeps_the_old_model(
    database_url: str, tiny_bundle: Path, tiny_bundle_v2: Path, tmp_path: Path
) -> None:
    broken = Path(shutil.copytree(tiny_bundle_v2, tmp_path / "v2"))
    registry = registry_with_versions(database_url, tiny_bundle, broken)
    (broken / "model.onnx").write_bytes(b"tampered after registration")
    settings = make_settings(tiny_bundle, database_url=database_url, warmup=False)
    with LiveServer(settings) as live, live.client() as c:
        r = c.post("/models/tiny@2/promote")
        assert r.status_code == 409
        assert "still serving tiny@1" in r.json()["error"]["message"]
        assert c.post("/embed", json={"notes": NOTES}).json()["model"]["version"] == "1"
    assert registry.active("tiny").ref == "tiny@1"  # type: ignore[union-attr]


def test_promote_bad_requests(database_url: str, tiny_bundle: Path, tiny_bundle_v2: Path) -> None:
    registry = registry_with_versions(database_url, tiny_bundle, tiny_bundle_v2)
    registry.retire("tiny@2")
    settings = make_settings(tiny_bundle, database_url=database_url, warmup=False)
    with LiveServer(settings) as live, live.client() as c:
        assert c.post("/models/tiny@9/promote").status_code == 404
        r = c.post("/models/tiny@2/promote")
        assert r.status_code == 409 and "retired" in r.json()["error"]["message"]


@pytest.mark.slow
def test_promotion_from_the_cli_reaches_a_running_service(
    database_url: str, tiny_bundle: Path, tiny_bundle_v2: Path
) -> None:
    registry = registry_with_versions(database_url, tiny_bundle, tiny_bundle_v2)
    settings = make_settings(
        tiny_bundle, database_url=database_url, warmup=False, registry_poll_s=0.2
    )
    with LiveServer(settings) as live, live.client() as c:
        registry.promote("tiny@2")  # what `notespace models promote` does
        deadline = time.monotonic() + 10
        while c.post("/embed", json={"notes": NOTES}).json()["model"]["version"] != "2":
            assert time.monotonic() < deadline, "service never picked up the promotion"
            time.sleep(0.1)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_service_with_named_model_missing_refuses_to_start(
    database_url: str, tiny_bundle: Path
) -> None:
    settings = make_settings(tiny_bundle, database_url=database_url, model_name="absent")
    with pytest.raises(RuntimeError, match="did not start"), LiveServer(settings):
        pass
