"""MEDEC-MS decision-type classification (README): flagged rows, `Corrected Text` → `Error
Type`; the probe's examples come from the validation file, the test file is the test split."""

from __future__ import annotations

from pathlib import Path

from training.evaluate.suite.hashsplit import stratified_hash_holdout
from training.evaluate.suite.loaders.files import data_file, read_csv_table, require_columns
from training.evaluate.suite.tasks import ClassificationTask, Example, fix_classes

VALIDATION_FILE = "MEDEC-MS-ValidationSet-with-GroundTruth-and-ErrorType.csv"
TEST_FILE = "MEDEC-MS-TestSet-with-GroundTruth-and-ErrorType.csv"
COLUMNS = ("Text ID", "Error Flag", "Error Type", "Corrected Text")
PROBE_VAL_FRACTION = 0.2


def _flagged(task: str, path: Path) -> list[Example]:
    table = read_csv_table(path)
    require_columns(task, path, table, COLUMNS)
    out = []
    for r in table.rows:
        text = str(r.get("Corrected Text") or "")
        # The test file ends with blank placeholder rows; flag-0 rows have no error type.
        if str(r.get("Error Flag")).strip() == "1" and text.strip() and text.strip() != "NA":
            out.append(Example(str(r["Text ID"]), text, str(r["Error Type"]).strip()))
    return out


def load_medec_task(name: str, directory: Path, *, min_per_class: int) -> ClassificationTask:
    pool = _flagged(name, data_file(name, directory, VALIDATION_FILE))
    test = _flagged(name, data_file(name, directory, TEST_FILE))
    # Stratified by class so the small classes keep validation examples (a plain 20 % hash
    # rule leaves pharmacotherapy one); the order within a class is sha256 of the Text ID.
    train, val = stratified_hash_holdout(
        pool, label=lambda e: e.y, key=lambda e: e.item_id, fraction=PROBE_VAL_FRACTION
    )
    protocol = (
        "MEDEC-MS: rows with Error Flag 1, text = Corrected Text, label = Error Type. Few-shot "
        "pool and probe validation from the validation file (per class, the "
        f"{PROBE_VAL_FRACTION:.0%} with the smallest sha256(Text ID) validate); test = the "
        "test file."
    )
    return fix_classes(name, train, val, test, min_per_class=min_per_class, protocol=protocol)
