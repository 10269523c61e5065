"""Errors raised before training starts: bad corpora and bad run configurations."""

from __future__ import annotations


class TrainingError(Exception):
    """Base class; messages name files, columns and settings, never note text."""


class CorpusError(TrainingError):
    """A corpus file is missing, malformed, or unusable for the requested run."""


class TrainingConfigError(TrainingError):
    """A run configuration is invalid or inconsistent with its corpus or base model."""
