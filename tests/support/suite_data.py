"""Tiny data files shaped like the real ones under ../shared/data (same columns, same folder
layout), with words from the tiny tokenizer's vocabulary."""

from __future__ import annotations

import csv
import gzip
import io
import random
from pathlib import Path

from tests.training.evaluate.conftest import write_mtsamples

MEDQUAD_COLUMNS = [
    "row_id", "collection", "file", "doc_id", "doc_source", "doc_url", "focus",
    "focus_semantic_group", "pid", "qid", "qtype", "question", "answer",
]  # fmt: skip
QTYPE_WORDS = {
    "information": "patient history plan review",
    "treatment": "medication dose daily twice",
    "symptoms": "chest pain shortness of breath fever cough",
    "exams and tests": "ct scan x ray mri ultrasound",
    "susceptibility": "diabetes hypertension asthma",
    "causes": "renal failure copd",
    "prevention": "aspirin metformin insulin antibiotics",
    "research": "clinic follow up",  # collection-specific in the real data: dropped
}
MEDEC_COLUMNS = [
    "Text ID", "Text", "Sentences", "Error Flag", "Error Type", "Error Sentence ID",
    "Error Sentence", "Corrected Sentence", "Corrected Text",
]  # fmt: skip
MEDEC_TYPES = {
    "management": "plan review follow up clinic",
    "diagnosis": "ct scan abnormal fracture",
    "treatment": "surgery operation procedure",
    "pharmacotherapy": "medication dose aspirin",
    "causalOrganism": "fever cough antibiotics",
}


def _words(rng: random.Random, topic: str, filler: int = 6) -> str:
    pool = ["patient", "admitted", "stable", "tolerated", "nursing", "note", "observations"]
    words = topic.split() * 2 + rng.sample(pool, filler)
    rng.shuffle(words)
    return " ".join(words)


def write_medquad(path: Path, foci: int = 40, seed: int = 0) -> Path:
    rng = random.Random(seed)
    rows = []
    for f in range(foci):
        focus = f"Condition {f}"
        for pid, (qtype, words) in enumerate(QTYPE_WORDS.items(), start=1):
            rows.append(
                {
                    "row_id": f"9_CDC_QA/{f:07d}.xml#{pid}",
                    "collection": "9_CDC_QA",
                    "file": f"{f:07d}.xml",
                    "doc_id": f"{f:07d}",
                    "doc_source": "CDC",
                    "doc_url": "",
                    "focus": focus,
                    "focus_semantic_group": "Disorders",
                    "pid": str(pid),
                    "qid": f"{f:07d}-{pid}",
                    "qtype": qtype,
                    "question": f"What is  the {qtype} of {focus} ?",
                    "answer": f"{focus}: {_words(rng, words)}",
                }
            )
    # A question with two answers (as NIDDK splits one answer into paragraphs).
    extra = dict(rows[0], row_id="9_CDC_QA/0000000.xml#99", pid="99", answer="second paragraph")
    rows.append(extra)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MEDQUAD_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(buffer.getvalue().encode("utf-8"), mtime=0))
    return path


def write_meqsum(path: Path, n: int = 60, seed: int = 0) -> Path:
    rng = random.Random(seed)
    topics = list(QTYPE_WORDS.values())
    rows = []
    for i in range(n):
        topic = topics[i % len(topics)]
        summary = f"What about {topic} number {i} ?" if i != 1 else rows[0]["Summary"]
        rows.append(
            {
                "row": str(i + 1),
                "File": f"{i}-{rng.randrange(10**8)}.xml.txt",
                "CHQ": f"SUBJECT: question {i}\nMESSAGE: {_words(rng, topic)} number {i}",
                "Summary": summary,
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["row", "File", "CHQ", "Summary"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_medec(directory: Path, per_type: int = 12, seed: int = 0) -> Path:
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for part, count, blank in (("Validation", per_type, 0), ("Test", per_type // 2, 5)):
        rows = []
        prefix = "ms-val" if part == "Validation" else "ms-test"
        for error_type, words in MEDEC_TYPES.items():
            k = 2 if error_type == "causalOrganism" else count  # too few: dropped
            for _ in range(k):
                text = f"A patient presents. {_words(rng, words)}."
                rows.append(
                    {
                        "Text ID": f"{prefix}-{len(rows)}",
                        "Text": text.replace("patient", "woman"),
                        "Sentences": "0 " + text,
                        "Error Flag": "1",
                        "Error Type": error_type,
                        "Error Sentence ID": "1",
                        "Error Sentence": "",
                        "Corrected Sentence": "",
                        "Corrected Text": text,
                    }
                )
        for _ in range(4):  # correct texts: flag 0, no error type
            rows.append(
                dict(rows[0], **{"Text ID": f"{prefix}-{len(rows)}", "Error Flag": "0"})
                | {"Error Type": "NA", "Corrected Text": "NA"}
            )
        rows += [dict.fromkeys(MEDEC_COLUMNS, "") for _ in range(blank)]  # trailing blank rows
        name = f"MEDEC-MS-{part}Set-with-GroundTruth-and-ErrorType.csv"
        with (directory / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=MEDEC_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    return directory


def write_data_root(root: Path) -> Path:
    """Every visible task's files at the paths the default suite names."""
    (root / "mtsamples").mkdir(parents=True, exist_ok=True)
    write_mtsamples(root / "mtsamples" / "mtsamples.csv", per_pair=12)
    write_medquad(root / "medquad" / "derived" / "medquad_qa_subset.csv.gz")
    write_meqsum(root / "meqsum" / "derived" / "meqsum.csv")
    write_medec(root / "medec_ms" / "upstream" / "MEDEC-MS")
    return root


TINY_SUITE = """
name: tiny
description: the visible tasks on tiny files
settings: {n: [2, all], seeds: 2, bootstrap: 50, runtime: onnxruntime}
tasks:
  - {name: mtsamples-note-type, path: mtsamples/mtsamples.csv}
  - {name: mtsamples-specialty, path: mtsamples/mtsamples.csv}
  - {name: medquad-qtype, path: medquad/derived/medquad_qa_subset.csv.gz}
  - {name: medquad-retrieval, path: medquad/derived/medquad_qa_subset.csv.gz}
  - {name: meqsum-retrieval, path: meqsum/derived/meqsum.csv}
  - {name: medec-type, path: medec_ms/upstream/MEDEC-MS}
"""
