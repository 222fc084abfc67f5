"""Implementations of the ports in ``kernel.ports``: embedded (files, SQLite) and Azure SDK ones.

Importing this package imports no Azure SDK: each ``azure_*`` module imports its SDK lazily, and
``kernel.adapters.factory`` imports an ``azure_*`` module only when the settings select it, so a
cold start that never touches Azure storage never pays for those imports.
"""

from __future__ import annotations

import re

_SECRET_PARTS = re.compile(
    r"(?i)(AccountKey|SharedAccessKey|SharedAccessSignature|sig|password|client_secret)=([^;&\s\"']+)"
)


def redact(text: str) -> str:
    """``text`` with account keys, shared access keys and signatures replaced by ``***``."""
    return _SECRET_PARTS.sub(lambda m: f"{m.group(1)}=***", str(text))


__all__ = ["redact"]
