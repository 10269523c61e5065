"""The audit trail as the API records it: one entry per call, written in the background
(service.registry.audit stores them; api/ reaches the trail through this layer only)."""

from __future__ import annotations

from service.registry.audit import AuditLog, AuditRecord

__all__ = ["AuditLog", "AuditRecord"]
