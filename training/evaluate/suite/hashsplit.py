"""Deterministic splits from sha256 of a key: the same key lands on the same side on every
machine and in every run, whatever else is in the file."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def hash_int(key: str) -> int:
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16)


def hash_unit(key: str, salt: str) -> float:
    """A number in [0, 1) from the key; different salts give independent draws."""
    return hash_int(f"{salt}:{key}") / 2**256


def normalise(text: str) -> str:
    """Lower-cased, whitespace collapsed: how the data READMEs compare questions and foci."""
    return " ".join(text.lower().split())


def is_fifth(key: str) -> bool:
    """The READMEs' test rule: int(sha256(key).hexdigest(), 16) % 5 == 0 (20 %)."""
    return hash_int(key) % 5 == 0


def hash_split_side(key: str, *, test_fraction: float, val_fraction: float) -> str:
    """'test', 'val' or 'train' for a group key; fractions are of all keys."""
    if hash_unit(key, "test") < test_fraction:
        return "test"
    rest = 1.0 - test_fraction
    if rest > 0 and hash_unit(key, "val") < val_fraction / rest:
        return "val"
    return "train"


def stratified_hash_holdout(
    items: Sequence[T], *, label: Callable[[T], str], key: Callable[[T], str], fraction: float
) -> tuple[list[T], list[T]]:
    """(kept, held out): per class, the `fraction` of items with the smallest hash of their key
    are held out (at least one when the class has two or more), so small classes keep both."""
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by_class[label(item)].append(i)
    held: set[int] = set()
    for members in by_class.values():
        ranked = sorted(members, key=lambda i: hash_int(key(items[i])))
        k = round(len(members) * fraction)
        if len(members) >= 2:
            k = min(max(k, 1), len(members) - 1)
        held.update(ranked[:k])
    kept = [m for i, m in enumerate(items) if i not in held]
    out = [m for i, m in enumerate(items) if i in held]
    return kept, out
