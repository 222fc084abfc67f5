"""App settings and ``%NAME%`` binding expressions, resolved the way the Functions host does.

Settings come from a ``local.settings.json`` file (its ``Values``) or a dict, with ``os.environ``
as the fallback. Connection names on bindings (``connection="ServiceBus"``) are not checked: the
embedded bus is local, so a connection is a no-op and an app runs without any connection setting.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

_EXPRESSION = re.compile(r"%([^%]+)%")


class SettingsError(ValueError):
    """A binding expression names a setting that does not exist, or a settings file is bad."""


class Settings:
    """A read-only view of app settings with environment fallback."""

    def __init__(self, values: Mapping[str, str] | None = None, *, use_environ: bool = True) -> None:
        self._values: dict[str, str] = {str(k): str(v) for k, v in (values or {}).items()}
        self._use_environ = use_environ

    @classmethod
    def load(cls, source: "Settings | Mapping[str, Any] | str | os.PathLike[str] | None") -> "Settings":
        """Build settings from a Settings, a dict, a ``local.settings.json`` path, or None."""
        if isinstance(source, Settings):
            return source
        if source is None:
            return cls({})
        if isinstance(source, Mapping):
            values = source.get("Values") if isinstance(source.get("Values"), Mapping) else source
            return cls({k: v for k, v in values.items() if v is not None})
        path = Path(source)
        document = read_json_file(path, "settings file", SettingsError)
        values = document.get("Values", {}) if isinstance(document, dict) else {}
        if not isinstance(values, dict):
            raise SettingsError(f"settings file {path}: 'Values' must be an object")
        return cls({k: v for k, v in values.items() if v is not None})

    def get(self, name: str, default: str | None = None) -> str | None:
        if name in self._values:
            return self._values[name]
        if self._use_environ and name in os.environ:
            return os.environ[name]
        return default

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def resolve(self, value: str, *, where: str) -> str:
        """Replace every ``%NAME%`` in ``value``; ``where`` names the binding for the error message."""

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            found = self.get(name)
            if found is None:
                raise SettingsError(f"{where}: binding expression '%{name}%' names an app setting that is not defined")
            return found

        return _EXPRESSION.sub(substitute, value)


def load_host_json(app_dir: Path | None) -> dict[str, Any]:
    """The app's ``host.json`` (empty when there is none)."""
    if app_dir is None:
        return {}
    path = app_dir / "host.json"
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise SettingsError(f"{path} is not valid JSON: {error}") from error
    return document if isinstance(document, dict) else {}


def route_prefix(host_json: Mapping[str, Any]) -> str:
    """``extensions.http.routePrefix`` (default ``api``), without surrounding slashes."""
    http = host_json.get("extensions", {}).get("http", {}) if isinstance(host_json.get("extensions"), dict) else {}
    prefix = http.get("routePrefix", "api") if isinstance(http, dict) else "api"
    return str(prefix).strip("/")


def read_json_file(path: Path, what: str, error: type[Exception]) -> Any:
    """The JSON in ``path``, or ``error`` naming the file and what is wrong with it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as missing:
        raise error(f"{what} {path} does not exist") from missing
    except json.JSONDecodeError as invalid:
        raise error(f"{what} {path} is not valid JSON: {invalid}") from invalid
