"""A small synthetic clinical-note generator (no patient data) for tests and the quickstart."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from training.data.notes import Note

_DRUGS = ("paracetamol", "amoxicillin", "ramipril", "metformin", "furosemide", "apixaban")
_FINDINGS = (
    "no acute abnormality",
    "small left pleural effusion",
    "established small vessel change",
    "consolidation in the right lower lobe",
    "a simple renal cyst",
)
_SYMPTOMS = ("chest pain", "shortness of breath", "abdominal pain", "confusion", "a fall")
_PROCEDURES = ("laparoscopic cholecystectomy", "total hip replacement", "appendicectomy")


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _radiology(rng: np.random.Generator) -> list[str]:
    site = _pick(rng, ("CT head", "chest X-ray", "CT abdomen", "MRI spine", "ultrasound"))
    return [
        f"RADIOLOGY REPORT. Examination: {site}. Clinical indication: {_pick(rng, _SYMPTOMS)}.",
        f"Findings: {_pick(rng, _FINDINGS)}. Comparison with the previous study shows no change.",
        f"Impression: {_pick(rng, _FINDINGS)}. Suggest clinical correlation.",
    ]


def _nursing(rng: np.random.Generator) -> list[str]:
    return [
        f"Nursing note. Patient settled overnight, observations stable, NEWS {rng.integers(0, 6)}.",
        f"Pain controlled with regular {_pick(rng, _DRUGS)}. Pressure areas intact.",
        "Mobilising with a frame, eating and drinking well, family updated by phone.",
    ]


def _discharge(rng: np.random.Generator) -> list[str]:
    age = int(rng.integers(25, 95))
    return [
        f"DISCHARGE SUMMARY. {age}-year-old admitted with {_pick(rng, _SYMPTOMS)}.",
        f"Treated with {_pick(rng, _DRUGS)} and {_pick(rng, _DRUGS)}; imaging showed "
        f"{_pick(rng, _FINDINGS)}.",
        f"Discharged home on day {rng.integers(2, 15)} with GP follow-up in two weeks.",
    ]


def _progress(rng: np.random.Generator) -> list[str]:
    return [
        f"Ward round progress note. Day {rng.integers(1, 10)} of admission.",
        f"Subjective: reports {_pick(rng, _SYMPTOMS)} is improving. Objective: HR "
        f"{rng.integers(60, 110)}, BP {rng.integers(100, 160)}/{rng.integers(60, 95)}.",
        f"Plan: continue {_pick(rng, _DRUGS)}, repeat bloods tomorrow, review by the team.",
    ]


def _operative(rng: np.random.Generator) -> list[str]:
    return [
        f"OPERATIVE NOTE. Procedure: {_pick(rng, _PROCEDURES)} under general anaesthetic.",
        "Findings as expected. Haemostasis secured and the wound closed in layers.",
        f"Estimated blood loss {rng.integers(10, 400)} ml. Post-operative "
        f"{_pick(rng, _DRUGS)} prescribed.",
    ]


GENERATORS: dict[str, Callable[[np.random.Generator], list[str]]] = {
    "radiology": _radiology,
    "nursing": _nursing,
    "discharge_summary": _discharge,
    "progress_note": _progress,
    "operative_note": _operative,
}


def synthetic_notes(
    n_notes: int, *, seed: int = 0, n_patients: int | None = None, max_sentences: int = 40
) -> list[Note]:
    """Generate notes of several categories and realistic lengths (roughly 30-600 words).

    Lengths are log-normal like real notes; patients get several notes each so group splits
    are exercised; label marks a binary "abnormal finding" task for downstream tests.
    """
    rng = np.random.default_rng(seed)
    categories = sorted(GENERATORS)
    n_patients = n_patients or max(1, n_notes // 3)
    notes = []
    for index in range(n_notes):
        category = categories[int(rng.integers(len(categories)))]
        sentences: list[str] = []
        repeats = int(np.clip(rng.lognormal(mean=1.2, sigma=0.8), 1, max_sentences / 3))
        for _ in range(repeats):
            sentences.extend(GENERATORS[category](rng))
        text = " ".join(sentences)
        notes.append(
            Note(
                note_id=f"syn-{index}",
                text=text,
                group=f"patient-{int(rng.integers(n_patients))}",
                category=category,
                label="abnormal" if "no acute abnormality" not in text else "normal",
            )
        )
    return notes
