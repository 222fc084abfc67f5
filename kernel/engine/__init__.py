"""The embedded engine: run any v2-model Durable Functions app with no Functions host.

See docs/engine.md. ``EmbeddedHost`` runs an app; ``VirtualClock`` lets tests move time.
"""

from __future__ import annotations

from .clock import RealClock, VirtualClock
from .host import EmbeddedHost
from .http import HttpResult
from .indexing import IndexingError, UnsupportedBindingError
from .settings import Settings, SettingsError

__all__ = [
    "EmbeddedHost",
    "HttpResult",
    "IndexingError",
    "RealClock",
    "Settings",
    "SettingsError",
    "UnsupportedBindingError",
    "VirtualClock",
]
