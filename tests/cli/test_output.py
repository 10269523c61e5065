"""The CLI for scripts and for people: --json for models, keys and index stats; tables that keep
long names whole; `models show` marks the served version; every setting a `serve` flag; a CSV
missing a column answered with one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from service.cli import app
from service.settings import Settings
from tests.conftest import migrated_sqlite_url, registry_with_versions

LONG_NAME = "trust-clinical-notes-adapted-encoder"


def run(*args: str, terminal_width: int = 80) -> str:
    result = CliRunner().invoke(app, list(args), terminal_width=terminal_width)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture()
def database(tiny_bundle: Path, tiny_bundle_v2: Path) -> str:
    url = migrated_sqlite_url()
    registry_with_versions(url, tiny_bundle, tiny_bundle_v2, active="tiny@1")
    return url


def test_models_list_json_and_show_mark_the_served_version(database: str) -> None:
    listed = json.loads(run("models", "list", "--json", "--database-url", database))
    assert {m["ref"]: m["serving"] for m in listed} == {"tiny@1": True, "tiny@2": False}
    assert {m["ref"]: m["status"] for m in listed} == {"tiny@1": "active", "tiny@2": "staged"}
    shown = json.loads(run("models", "show", "tiny@1", "--database-url", database))
    assert shown["serving"] is True and shown["ref"] == "tiny@1"
    assert (
        json.loads(run("models", "show", "tiny@2", "--database-url", database))["serving"] is False
    )


def test_keys_list_and_index_stats_as_json(database: str) -> None:
    created = run(
        *("keys", "create", "--name", LONG_NAME, "--scopes", "embed,search"),
        *("--database-url", database),
    )
    key, key_id = created.splitlines()[0], re.search(r"key ([a-z0-9]{10}) ", created)
    assert key_id is not None
    keys = json.loads(run("keys", "list", "--json", "--database-url", database))
    assert [(k["key_id"], k["name"], k["scopes"]) for k in keys] == [
        (key_id.group(1), LONG_NAME, ["embed", "search"])
    ]
    assert key.startswith("ns_") and key not in json.dumps(keys)  # never the key itself
    stats = json.loads(run("index", "stats", "--json", "--database-url", database))
    assert {s["model"] for s in stats} == {"tiny@1", "tiny@2"}
    assert all(s["live_notes"] == 0 and s["coverage"] is None for s in stats)


def test_tables_keep_long_names_whole_on_a_narrow_terminal(database: str) -> None:
    run("keys", "create", "--name", LONG_NAME, "--scopes", "embed", "--database-url", database)
    table = run("keys", "list", "--database-url", database, terminal_width=60)
    assert "…" not in table
    # Wrapped, not cut: the name column's lines read back as the whole name.
    cells = [line.split("│")[2].strip() for line in table.splitlines() if line.count("│") > 2]
    assert "".join(cells) == LONG_NAME


def test_every_setting_is_a_serve_flag_with_its_description() -> None:
    text = run("serve", "--help", terminal_width=200)
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        assert flag in text, flag
        assert f"NOTESPACE_{name.upper()}" in text
        assert field.description and field.description.split()[0] in text


def test_a_csv_without_the_named_column_fails_in_one_line(tmp_path: Path) -> None:
    from training.cli import register

    training = typer.Typer()
    register(training)
    notes = tmp_path / "notes.csv"
    notes.write_text("doc_id,body,specialty\n1,chest pain,cardiology\n")
    result = CliRunner().invoke(
        training,
        [
            *("head", "train", "--bundle", str(tmp_path), "--data", str(notes), "--format", "csv"),
            *("--text-column", "note_text", "--id-column", "doc_id", "--out", str(tmp_path / "o")),
        ],
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "note_text" in lines[0] and "'body'" in lines[0]  # the column asked for, and those there
