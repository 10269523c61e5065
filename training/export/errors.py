"""The one error an export raises: its message names the file, the check and the figures."""

from __future__ import annotations


class ExportError(Exception):
    """The base directory cannot be exported, or the exported graph fails its parity check."""
