"""Which telemetry destinations the app settings select, checked before anything is built.

Azure Monitor when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set, OTLP/HTTP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (both when both are), JSON lines on the console otherwise
(``AOS_TELEMETRY_CONSOLE`` says where: off, stdout, stderr or a file). Bad values raise
:class:`TelemetryConfigError` naming the setting; a connection string is never echoed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from kernel import roles, settings

CONSOLE_STREAMS = ("stdout", "stderr")
LOG_FORMATS = ("text", "json")
OTLP_PROTOCOL = "http/protobuf"


class TelemetryConfigError(ValueError):
    """A telemetry setting has a value that cannot work; the message names the setting."""


@dataclass(frozen=True)
class TelemetryConfig:
    """Where spans, metrics and logs go. ``console`` is off, stdout, stderr or an absolute file path."""

    service_name: str
    connection_string: str = field(default="", repr=False)
    otlp_endpoint: str = ""
    console: str = "off"
    log_format: str = "text"
    disabled: bool = False
    #: OTEL_TRACES_SAMPLER as set (the SDK and the distro read it themselves); empty: every trace
    sampler: str = ""

    @property
    def azure_monitor(self) -> bool:
        return bool(self.connection_string)

    @property
    def console_file(self) -> Path | None:
        return None if self.console in ("off", *CONSOLE_STREAMS) else Path(self.console)

    def describe(self) -> str:
        """One line for banners and logs (never the connection string)."""
        if self.disabled:
            return "off (OTEL_SDK_DISABLED=true); trace context still rides in every envelope"
        places = []
        if self.azure_monitor:
            places.append("Azure Monitor (Application Insights)")
        if self.otlp_endpoint:
            places.append(f"OTLP {self.otlp_endpoint}")
        if self.console_file is not None:
            places.append(f"JSON lines in {self.console_file}")
        elif self.console != "off":
            places.append(f"JSON lines on {self.console}")
        where = ", ".join(places) or "nowhere (AOS_TELEMETRY_CONSOLE=off)"
        exported = [place for place, on in (("Azure Monitor", self.azure_monitor), ("OTLP", bool(self.otlp_endpoint))) if on]
        logs = f"logs as {self.log_format}" + (f", exported to {' and '.join(exported)}" if exported else "")
        return f"traces and metrics of {self.service_name} -> {where}; {logs}"


def from_settings(environ: Mapping[str, str] | None = None, *, local_file: Path | None = None) -> TelemetryConfig:
    """The configuration the settings ask for. ``local_file`` is where JSON lines go when
    AOS_TELEMETRY_CONSOLE is empty and no exporter is set (``aos run``: the state folder)."""
    connection = settings.get("APPLICATIONINSIGHTS_CONNECTION_STRING", environ).strip()
    if connection and not re.search(r"(?i)(^|;)\s*InstrumentationKey\s*=\s*[^;\s]", connection):
        raise TelemetryConfigError(
            "APPLICATIONINSIGHTS_CONNECTION_STRING has no InstrumentationKey=...: copy the whole connection string "
            "from the Application Insights resource (its value is not shown here)")
    endpoint = settings.get("OTEL_EXPORTER_OTLP_ENDPOINT", environ).strip()
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            shown = endpoint if "@" not in endpoint else "(a URL with credentials, not shown)"
            raise TelemetryConfigError(
                f"OTEL_EXPORTER_OTLP_ENDPOINT must be an http(s) URL such as http://localhost:4318, not '{shown[:200]}'")
        endpoint = endpoint.rstrip("/")
    protocol = settings.get("OTEL_EXPORTER_OTLP_PROTOCOL", environ).strip() or OTLP_PROTOCOL
    if protocol != OTLP_PROTOCOL:
        raise TelemetryConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL is '{protocol[:50]}': only {OTLP_PROTOCOL} is supported "
            "(opentelemetry-exporter-otlp-proto-http)")
    log_format = settings.get("AOS_LOG_FORMAT", environ).strip().lower() or "text"
    if log_format not in LOG_FORMATS:
        raise TelemetryConfigError(f"AOS_LOG_FORMAT must be text or json, not '{log_format[:50]}'")
    disabled_text = settings.get("OTEL_SDK_DISABLED", environ).strip().lower() or "false"
    if disabled_text not in ("true", "false"):
        raise TelemetryConfigError(f"OTEL_SDK_DISABLED must be true or false, not '{disabled_text[:50]}'")
    return TelemetryConfig(
        service_name=settings.get("OTEL_SERVICE_NAME", environ).strip() or default_service_name(environ),
        connection_string=connection, otlp_endpoint=endpoint,
        console=_console(settings.get("AOS_TELEMETRY_CONSOLE", environ), exporting=bool(connection or endpoint),
                         local_file=local_file),
        log_format=log_format, disabled=disabled_text == "true",
        sampler=settings.get("OTEL_TRACES_SAMPLER", environ).strip())


def default_service_name(environ: Mapping[str, str] | None = None) -> str:
    """``aos`` for the all-in-one app, else ``aos-<roles>`` (aos-realm, aos-kernel, aos-mcp)."""
    chosen = roles.selected_roles(environ)
    return "aos" if len(chosen) == len(roles.ROLE_BLUEPRINTS) else "aos-" + "-".join(chosen)


def _console(raw: str, *, exporting: bool, local_file: Path | None) -> str:
    value = raw.strip()
    if not value:
        if exporting:
            return "off"
        return str(local_file) if local_file is not None else "stderr"
    if value.lower() in ("off", *CONSOLE_STREAMS):
        return value.lower()
    if not (value.endswith(".jsonl") or "/" in value or "\\" in value):
        raise TelemetryConfigError(
            f"AOS_TELEMETRY_CONSOLE must be off, stdout, stderr or a file path (such as .aos/telemetry/spans.jsonl), "
            f"not '{value[:200]}'")
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else settings.APP_ROOT / path)
