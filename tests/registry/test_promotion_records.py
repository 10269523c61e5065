"""The promotion guard end to end on SQLite and PostgreSQL: registry records, CLI, live HTTP."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from service.bundle import load_bundle, write_manifest
from service.cli import app as cli_app
from service.errors import Conflict, PromotionRegression, PromotionUnverified
from service.registry.database import make_engine, session_factory
from service.registry.models import ModelRegistry, PromotionRequest
from service.registry.promotion_guard import (
    PromotionPolicy,
)
from service.registry.tables import PromotionCheck
from tests.conftest import LiveServer, make_settings, registry_with_versions
from tests.registry.test_promotion_guard import suite

POLICY = PromotionPolicy()
GOOD = suite({"mtsamples-specialty": 0.83, "medquad-retrieval": 0.61})
WORSE = suite({"mtsamples-specialty": 0.80, "medquad-retrieval": 0.61})
AT_MARGIN = suite({"mtsamples-specialty": 0.825, "medquad-retrieval": 0.605})


def two_versions(
    database_url: str,
    *bundles: Path,
    v1: dict[str, Any] | None = None,
    v2: dict[str, Any] | None = None,
) -> Any:
    """tiny@1 active and tiny@2 staged, with these eval_metrics (None: none stored)."""
    registry = registry_with_versions(database_url, *bundles)
    for ref, values in (("tiny@1", v1), ("tiny@2", v2)):
        if values is not None:
            registry.set_eval_metrics(ref, values)
    return registry


def all_checks(database_url: str) -> list[PromotionCheck]:
    with session_factory(make_engine(database_url))() as session:
        return list(session.scalars(select(PromotionCheck).order_by(PromotionCheck.id)))


def test_refused_then_forced_both_recorded(
    database_url: str, tiny_bundle: Path, tiny_bundle_v2: Path
) -> None:
    registry = two_versions(database_url, tiny_bundle, tiny_bundle_v2, v1=GOOD, v2=WORSE)
    with pytest.raises(PromotionRegression) as refused:
        registry.guard_promotion("tiny@2", POLICY, PromotionRequest("alice via CLI"))
    message = refused.value.message
    assert refused.value.status == 409 and refused.value.code == "promotion_regression"
    assert "mtsamples-specialty: macro_f1@16 0.8 vs 0.83 on tiny@1, difference -0.03" in message
    assert "wholly below -0.005" in message
    assert "--force-regression" in message
    assert registry.active("tiny").ref == "tiny@1"

    guarded = registry.guard_promotion(
        "tiny@2", POLICY, PromotionRequest("bob via CLI", force_regression=True)
    )
    assert guarded is not None and guarded.check.outcome == "forced"
    assert registry.promote("tiny@2", guarded=guarded).status == "active"

    first, second = all_checks(database_url)
    v1, v2 = registry.get("tiny@1"), registry.get("tiny@2")
    assert (first.outcome, first.requested_by, first.candidate_id, first.against_id) == (
        "refused",
        "alice via CLI",
        v2.id,
        v1.id,
    )
    assert (second.outcome, second.requested_by, second.against_ref) == (
        "forced",
        "bob via CLI",
        "tiny@1",
    )
    assert second.tasks["mtsamples-specialty"]["drop"] == pytest.approx(0.03)
    assert second.tasks["mtsamples-specialty"]["regressed"] is True
    assert (second.suite_name, second.suite_fingerprint, second.margin) == (
        "default",
        "a" * 64,
        0.005,
    )
    assert first.checked_at <= second.checked_at
    latest = registry.latest_checks()
    assert list(latest) == [v2.id] and latest[v2.id].id == second.id


def test_at_the_margin_passes_and_records_the_values(
    database_url: str, tiny_bundle: Path, tiny_bundle_v2: Path
) -> None:
    registry = two_versions(database_url, tiny_bundle, tiny_bundle_v2, v1=GOOD, v2=AT_MARGIN)
    guarded = registry.guard_promotion("tiny@2", POLICY, PromotionRequest("alice"))
    assert guarded is not None and guarded.check.outcome == "passed"
    registry.promote("tiny@2", guarded=guarded)
    check = registry.latest_check(registry.get("tiny@2").id)
    assert check is not None and check.tasks is not None
    assert check.tasks["medquad-retrieval"]["candidate"] == 0.605
    assert check.tasks["medquad-retrieval"]["against"] == 0.61
    # Promoting the active version again is a no-op: nothing compared, nothing recorded.
    assert registry.guard_promotion("tiny@2", POLICY, PromotionRequest("alice")) is None
    assert len(all_checks(database_url)) == 1


def test_not_comparable_is_allowed_unless_results_are_required(
    database_url: str, tiny_bundle: Path, tiny_bundle_v2: Path
) -> None:
    other_run = suite({"mtsamples-specialty": 0.10}, fingerprint="b" * 64)
    registry = two_versions(database_url, tiny_bundle, tiny_bundle_v2, v1=GOOD, v2=other_run)
    strict = PromotionPolicy(requires_eval=True)
    with pytest.raises(PromotionUnverified, match="different definitions, data or seeds"):
        registry.guard_promotion("tiny@2", strict, PromotionRequest("alice"))
    guarded = registry.guard_promotion("tiny@2", POLICY, PromotionRequest("alice"))
    assert guarded is not None and guarded.check.outcome == "not_comparable"
    assert guarded.check.tasks is None and guarded.check.suite_name == "default"
    assert [c.outcome for c in all_checks(database_url)] == ["refused", "not_comparable"]

    registry.set_eval_metrics("tiny@2", {"few_shot": {"macro_f1": 0.9}})  # no suite results
    guarded = registry.guard_promotion("tiny@2", POLICY, PromotionRequest("alice"))
    assert guarded is not None and guarded.check.outcome == "not_comparable"
    assert "tiny@2 has no evaluation-suite results" in guarded.check.reason


def test_promotion_refuses_when_the_active_version_changed_after_the_check(
    database_url: str, tiny_bundle: Path, tiny_bundle_v2: Path, tmp_path: Path
) -> None:
    v3 = Path(shutil.copytree(tiny_bundle_v2, tmp_path / "v3"))
    manifest = load_bundle(v3).manifest
    write_manifest(v3, **manifest.model_dump(exclude={"files", "version"}), version="3")
    registry = two_versions(database_url, tiny_bundle, tiny_bundle_v2, v1=GOOD, v2=GOOD)
    registry.register(load_bundle(v3), "alice")
    guarded = registry.guard_promotion("tiny@2", POLICY, PromotionRequest("alice"))
    registry.promote("tiny@3")  # someone else, between the check and the promotion
    with pytest.raises(Conflict, match="tiny@3 became active"):
        registry.promote("tiny@2", guarded=guarded)
    assert registry.active("tiny").ref == "tiny@3"


def test_a_new_name_is_compared_with_the_model_it_replaces(
    database_url: str, tiny_bundle: Path, tmp_path: Path
) -> None:
    other = Path(shutil.copytree(tiny_bundle, tmp_path / "other"))
    manifest = load_bundle(other).manifest
    write_manifest(other, **manifest.model_dump(exclude={"files", "name"}), name="adapted")
    registry = registry_with_versions(database_url, tiny_bundle, other)
    registry.set_eval_metrics("tiny@1", GOOD)
    registry.set_eval_metrics("adapted@1", WORSE)
    with pytest.raises(PromotionRegression, match="on tiny@1"):
        registry.guard_promotion(
            "adapted@1", POLICY, PromotionRequest("alice", fallback_ref="tiny@1")
        )
    guarded = registry.guard_promotion("adapted@1", POLICY, PromotionRequest("alice"))
    assert guarded is not None and guarded.check.outcome == "not_comparable"
    assert guarded.check.against_ref is None


# -- the CLI -------------------------------------------------------------------------------


def run_cli(*args: str) -> Any:
    # Wide enough that rich does not wrap the `models list` table.
    return CliRunner().invoke(cli_app, list(args), catch_exceptions=False, env={"COLUMNS": "250"})


def test_cli_promote_refuses_forces_and_shows_the_check(
    database_url: str, tiny_bundle: Path, tiny_bundle_v2: Path
) -> None:
    registry = two_versions(database_url, tiny_bundle, tiny_bundle_v2, v1=GOOD, v2=WORSE)
    db = ("--database-url", database_url)

    refused = run_cli("models", "promote", "tiny@2", "--by", "carol", *db)
    assert refused.exit_code == 1
    assert (
        "promotion refused" in refused.output
        and "difference -0.03 [-0.03, -0.03] wholly below -0.005" in refused.output
    )
    # --force-index overrides the index check only, not the guard.
    assert run_cli("models", "promote", "tiny@2", "--force-index", *db).exit_code == 1
    assert registry.active("tiny").ref == "tiny@1"

    forced = run_cli("models", "promote", "tiny@2", "--force-regression", "--by", "carol", *db)
    assert forced.exit_code == 0, forced.output
    assert "promotion check forced" in forced.output and "tiny@2 is active" in forced.output

    shown = run_cli("models", "show", "tiny@2", *db)
    assert shown.exit_code == 0
    check = json.loads(shown.stdout)["promotion_check"]
    assert (check["outcome"], check["against"], check["requested_by"]) == (
        "forced",
        "tiny@1",
        "carol via CLI",
    )
    assert check["tasks"]["mtsamples-specialty"]["against"] == 0.83
    listed = run_cli("models", "list", *db)
    assert "forced vs tiny@1" in listed.output

    # Rolling back to the better version passes; plain --force still overrides both checks.
    assert run_cli("models", "promote", "tiny@1", *db).exit_code == 0
    again = run_cli("models", "promote", "tiny@2", "--force", *db)
    assert again.exit_code == 0 and "promotion check forced" in again.output
    outcomes = [c.outcome for c in all_checks(database_url)]
    assert outcomes == ["refused", "refused", "forced", "passed", "forced"]


def test_cli_requires_results_when_the_setting_says_so(
    database_url: str, tiny_bundle: Path, tiny_bundle_v2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = two_versions(database_url, tiny_bundle, tiny_bundle_v2, v1=GOOD)
    monkeypatch.setenv("NOTESPACE_PROMOTION_REQUIRES_EVAL", "true")
    result = run_cli("models", "promote", "tiny@2", "--database-url", database_url)
    assert result.exit_code == 1 and "tiny@2 has no evaluation-suite results" in result.output
    monkeypatch.setenv("NOTESPACE_PROMOTION_REQUIRES_EVAL", "false")
    result = run_cli("models", "promote", "tiny@2", "--database-url", database_url)
    assert result.exit_code == 0 and "promotion check not_comparable" in result.output
    assert registry.active("tiny").ref == "tiny@2"


def test_margins_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.orchestration.promotion import promotion_policy
    from service.settings import Settings

    monkeypatch.setenv("NOTESPACE_PROMOTION_MARGIN", "0.01")
    monkeypatch.setenv("NOTESPACE_PROMOTION_TASK_MARGINS", '{"medquad-retrieval": 0.02}')
    policy = promotion_policy(Settings())
    assert (policy.margin_for("mtsamples-specialty"), policy.margin_for("medquad-retrieval")) == (
        0.01,
        0.02,
    )
    monkeypatch.setenv("NOTESPACE_PROMOTION_TASK_MARGINS", '{"medquad-retrieval": -1}')
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        Settings()


# -- HTTP on a live server ------------------------------------------------------------------


def test_http_promote_refused_409_then_forced_and_listed(
    database_url: str, tiny_bundle: Path, tiny_bundle_v2: Path
) -> None:
    registry = two_versions(database_url, tiny_bundle, tiny_bundle_v2, v1=GOOD, v2=WORSE)
    settings = make_settings(tiny_bundle, database_url=database_url, warmup=False)
    with LiveServer(settings) as live, live.client(headers={"X-Acting-User": "dr-ops"}) as c:
        r = c.post("/models/tiny@2/promote")
        assert r.status_code == 409
        error = r.json()["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "promotion_regression")
        assert (
            "mtsamples-specialty: macro_f1@16 0.8 vs 0.83 on tiny@1, difference -0.03"
            in (error["message"])
        )
        assert c.post("/models/tiny@2/promote?force_index=true").status_code == 409
        assert c.post("/embed", json={"notes": ["chest pain"]}).json()["model"]["version"] == "1"

        r = c.post("/models/tiny@2/promote?force_regression=true")
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["status"], body["serving"]) == ("active", True)
        assert body["promotion_check"]["outcome"] == "forced"
        assert body["promotion_check"]["requested_by"] == "dr-ops via HTTP, no key (auth off)"
        assert c.post("/embed", json={"notes": ["chest pain"]}).json()["model"]["version"] == "2"

        listed = {m["ref"]: m for m in c.get("/models").json()["models"]}
        assert listed["tiny@1"]["promotion_check"] is None
        check = listed["tiny@2"]["promotion_check"]
        assert (check["outcome"], check["candidate"], check["against"]) == (
            "forced",
            "tiny@2",
            "tiny@1",
        )
        assert check["tasks"]["mtsamples-specialty"]["drop"] == pytest.approx(0.03)
        assert c.get("/models/tiny@2").json()["promotion_check"]["id"] == check["id"]

        # Rollback to the better version passes; ?force=true still overrides both checks.
        r = c.post("/models/tiny@1/promote")
        assert r.status_code == 200 and r.json()["promotion_check"]["outcome"] == "passed"
        r = c.post("/models/tiny@2/promote?force=true")
        assert r.status_code == 200 and r.json()["promotion_check"]["outcome"] == "forced"
    assert [c.outcome for c in all_checks(database_url)] == [
        "refused",
        "refused",
        "forced",
        "passed",
        "forced",
    ]
    assert registry.active("tiny").ref == "tiny@2"


def test_http_new_name_is_compared_with_the_serving_version(
    database_url: str, tiny_bundle: Path, tmp_path: Path
) -> None:
    other = Path(shutil.copytree(tiny_bundle, tmp_path / "other"))
    manifest = load_bundle(other).manifest
    write_manifest(other, **manifest.model_dump(exclude={"files", "name"}), name="adapted")
    registry = registry_with_versions(database_url, tiny_bundle, other)
    registry.set_eval_metrics("tiny@1", GOOD)
    registry.set_eval_metrics("adapted@1", WORSE)
    settings = make_settings(tiny_bundle, database_url=database_url, warmup=False)
    with LiveServer(settings) as live, live.client() as c:
        r = c.post("/models/adapted@1/promote")
        assert r.status_code == 409 and "on tiny@1" in r.json()["error"]["message"]
    assert isinstance(registry, ModelRegistry) and registry.active("adapted") is None
