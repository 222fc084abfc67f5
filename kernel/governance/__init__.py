"""Governance: a tamper-evident audit log and the redaction that keeps secrets out of it.

See docs/audit.md.
"""

from __future__ import annotations

from kernel.governance.audit import (
    AuditChainBroken,
    AuditContention,
    AuditLog,
    AuditRecord,
    Break,
    ChainReport,
    VerifyReport,
)
from kernel.governance.redaction import RedactionRules, digest, mask, redact

__all__ = [
    "AuditChainBroken",
    "AuditContention",
    "AuditLog",
    "AuditRecord",
    "Break",
    "ChainReport",
    "RedactionRules",
    "VerifyReport",
    "digest",
    "mask",
    "redact",
]
