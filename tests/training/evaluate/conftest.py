"""A small MTSamples-shaped corpus whose categories and specialties the tiny model can see."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

# Document-type headings (the note category) and clinical specialties (the task label), each
# with words from the tiny tokenizer's vocabulary so a probe has something to find.
DOC_TYPES = {
    "Surgery": "surgery operation procedure incision closed sutures blood loss",
    "Radiology": "ct scan x ray mri ultrasound normal abnormal",
    "Consult - History and Phy.": "history of diabetes hypertension asthma copd plan review",
}
SPECIALTIES = {
    "Orthopedic": "knee hip shoulder fracture left right",
    "Cardiovascular / Pulmonary": "chest pain shortness of breath heart rate oxygen saturation",
    "Neurology": "headache",  # not in the vocabulary: this class is the hard one
}


def write_mtsamples(path: Path, per_pair: int = 8, seed: int = 0) -> Path:
    rng = random.Random(seed)
    filler = [
        "patient",
        "admitted",
        "discharged",
        "home",
        "follow",
        "up",
        "clinic",
        "stable",
        "tolerated",
    ]
    rows = []
    note_id = 0
    for doc, doc_words in DOC_TYPES.items():
        for spec, spec_words in SPECIALTIES.items():
            for i in range(per_pair):
                words = (doc_words.split() + spec_words.split()) * 2 + rng.sample(filler, 5)
                rng.shuffle(words)
                text = f"NOTE {i}: " + " ".join(words)
                for specialty in (doc, spec):  # listed twice, as in MTSamples
                    note_id += 1
                    rows.append(
                        {
                            "note_id": note_id,
                            "description": "",
                            "medical_specialty": specialty,
                            "sample_name": "",
                            "transcription": text,
                            "keywords": "",
                        }
                    )
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def mtsamples_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mtsamples(tmp_path_factory.mktemp("mtsamples") / "mtsamples.csv")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "realdata: reads the real data sets under ../shared/data (skipped without)"
    )


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root shaped like ../shared/data, with tiny files for every visible task."""
    from tests.support.suite_data import write_data_root

    return write_data_root(tmp_path_factory.mktemp("data-root"))
