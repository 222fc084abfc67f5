"""Secret values this process has resolved, masked out of every log record and error text.

Secrets reach the process in one way only: a ``${secret:NAME}`` reference resolved through the
secrets port (Key Vault in Azure, the environment locally) or an ``${env:NAME}`` reference in a
credential field. Each resolved value is :func:`remember`-ed here, and from the first one on a log
record factory masks every remembered value in each record's message and traceback before any
handler (console, file, Application Insights, pytest's capture) sees it. Code that builds error
texts from foreign input — an endpoint's error body, a child process's stderr — passes them through
:func:`mask_known` too, so a server that echoes a key back cannot put it in a turn record.

Values shorter than :data:`MIN_LENGTH` characters are not masked: masking ``"1"`` or ``"true"``
would garble every log line without protecting anything.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kernel.governance.redaction import REDACTED, mask

MIN_LENGTH = 6

_values: set[str] = set()
_lock = threading.Lock()
_installed = False


def remember(value: str | None) -> None:
    """Mask ``value`` wherever this process logs from now on (and in :func:`mask_known`)."""
    global _installed
    if not isinstance(value, str) or len(value) < MIN_LENGTH or value in _values:
        return
    with _lock:
        _values.add(value)
        if not _installed:
            _install()
            _installed = True


def mask_known(text: str) -> str:
    """``text`` with every remembered secret value replaced by ``[redacted]``."""
    return mask(text, list(_values)) if _values and isinstance(text, str) else text


def known() -> int:
    """How many values are remembered (for diagnostics; never the values)."""
    return len(_values)


def _install() -> None:
    """Wrap the log record factory: records are masked when created, whoever handles them."""
    previous = logging.getLogRecordFactory()

    def masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        values = list(_values)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: leave it for the handler to report
            return record
        cleaned = mask(message, values)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            masked = mask(text, values)
            if masked != text:
                record.exc_text = masked
        return record

    logging.setLogRecordFactory(masked_record)


__all__ = ["MIN_LENGTH", "REDACTED", "known", "mask_known", "remember"]
