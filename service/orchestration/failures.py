"""What a database failure means for the caller (service.registry.failures decides; api/
answers with it and logs its content-free label)."""

from __future__ import annotations

from service.registry.failures import DatabaseFailure, classify

__all__ = ["DatabaseFailure", "classify"]
