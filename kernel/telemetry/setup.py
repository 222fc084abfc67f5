"""The process's telemetry: providers and exporters built from the settings, held once per process.

The apps configure it on first use (the first span a trigger starts), so ``function_app.py`` pays
nothing at import and an app without settings still propagates trace context. ``aos run``
configures it explicitly (:func:`configure_local`), with JSON lines in its state folder by default.
The SDK is imported only here, and the Azure Monitor distro only when its connection string is set.

The platform keeps its own providers rather than relying on OpenTelemetry's global ones (which
can be set once per process), so tests and successive local platforms can each have their own;
with Azure Monitor the distro installs the global providers and the platform adopts them.
Tests inject in-memory exporters with :func:`capture`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry import metrics, trace

from kernel.telemetry.config import TelemetryConfig, TelemetryConfigError, from_settings
from kernel.telemetry.ids import chosen
from kernel.telemetry.logs import configure_logging
from kernel.telemetry.metrics import Instruments

log = logging.getLogger("aos.telemetry")
INSTRUMENTATION = "aos"
#: Where ``aos run`` writes spans when nothing else is configured, under its state folder.
LOCAL_SPANS_FILE = Path("telemetry") / "spans.jsonl"


def _version() -> str:
    try:
        return importlib.metadata.version("aos")
    except importlib.metadata.PackageNotFoundError:
        return "0"


class Telemetry:
    """Providers, tracer, meter and instruments of one configuration; ``shutdown`` flushes them."""

    def __init__(self, config: TelemetryConfig, tracer_provider: Any, meter_provider: Any, *,
                 logger_provider: Any = None, log_handler: logging.Handler | None = None, pinned: bool = False,
                 note: str | None = None) -> None:
        self.config = config
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.logger_provider = logger_provider  # log export (OTLP, Azure Monitor), if any
        self.log_handler = log_handler  # the root logger's handler feeding it
        self.tracer = tracer_provider.get_tracer(INSTRUMENTATION, _version())
        self.instruments = Instruments(meter_provider.get_meter(INSTRUMENTATION, _version()))
        self.pinned = pinned
        self.note = note

    def describe(self) -> str:
        return self.note or self.config.describe()

    def force_flush(self) -> None:
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            flush = getattr(provider, "force_flush", None)
            if flush is not None:
                flush()

    def shutdown(self) -> None:
        if self.log_handler is not None:  # records from now on are not this telemetry's to export
            from kernel.telemetry.log_export import detach

            detach(self.log_handler)
            self.log_handler = None
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            stop = getattr(provider, "shutdown", None)
            if stop is not None:
                try:
                    stop()
                except Exception:
                    log.warning("telemetry: shutting down %s failed", type(provider).__name__, exc_info=True)


def _id_generator() -> Any:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class PlatformIdGenerator(RandomIdGenerator):
        """Random ids, except where the platform chose them (``kernel.telemetry.ids.chosen_ids``)."""

        def generate_span_id(self) -> int:
            ids = chosen()
            return ids.span_id if ids is not None else super().generate_span_id()

        def generate_trace_id(self) -> int:
            ids = chosen()
            return ids.trace_id if ids is not None and ids.trace_id else super().generate_trace_id()

    return PlatformIdGenerator()


def build(config: TelemetryConfig, *, span_processors: Sequence[Any] = (), metric_readers: Sequence[Any] = (),
          pinned: bool = False, note: str | None = None) -> Telemetry:
    """Providers for ``config``: Azure Monitor, OTLP and/or JSON lines, plus the given processors and readers."""
    configure_logging(config.log_format)
    if config.disabled:
        return Telemetry(config, trace.NoOpTracerProvider(), metrics.NoOpMeterProvider(), pinned=pinned, note=note)
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": config.service_name, "service.version": _version()})
    processors, readers, log_processors = list(span_processors), list(metric_readers), []
    if config.otlp_endpoint:
        from kernel.telemetry.log_export import otlp_log_processor

        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )

        processors.append(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{config.otlp_endpoint}/v1/traces")))
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{config.otlp_endpoint}/v1/metrics")))
        log_processors.append(otlp_log_processor(config.otlp_endpoint))
    if config.console != "off":
        from kernel.telemetry.jsonl import (
            JsonLinesSink,
            JsonLinesSpanExporter,
            metrics_exporter,
            metrics_path,
        )

        spans_file = config.console_file
        processors.append(BatchSpanProcessor(JsonLinesSpanExporter(JsonLinesSink(spans_file or config.console))))
        metrics_sink = JsonLinesSink(metrics_path(spans_file) if spans_file else config.console)
        readers.append(PeriodicExportingMetricReader(metrics_exporter(metrics_sink)))
    if config.azure_monitor:
        tracer_provider, meter_provider, logger_provider = _azure_monitor(config, resource, processors, readers)
        return Telemetry(config, tracer_provider, meter_provider, logger_provider=logger_provider,
                         log_handler=_export_logs(logger_provider, log_processors), pinned=pinned, note=note)
    tracer_provider = TracerProvider(resource=resource, id_generator=_id_generator())
    for processor in processors:
        tracer_provider.add_span_processor(processor)
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    if not log_processors:
        return Telemetry(config, tracer_provider, meter_provider, pinned=pinned, note=note)
    from kernel.telemetry.log_export import logger_provider as new_logger_provider

    logger_provider = new_logger_provider(resource)
    return Telemetry(config, tracer_provider, meter_provider, logger_provider=logger_provider,
                     log_handler=_export_logs(logger_provider, log_processors), pinned=pinned, note=note)


def _export_logs(provider: Any, processors: list[Any]) -> logging.Handler | None:
    """Feed the root logger's records, redacted, to ``provider`` (an SDK logger provider: ours for
    OTLP, the distro's for Azure Monitor), adding ``processors`` to it; ``None`` when the process's
    log provider is not the SDK's (OpenTelemetry configured by someone else, who exports its logs)."""
    from opentelemetry.sdk._logs import LoggerProvider

    if not isinstance(provider, LoggerProvider):
        return None
    from kernel.telemetry.log_export import attach

    for processor in processors:
        provider.add_log_record_processor(processor)
    return attach(provider)


def _azure_monitor(config: TelemetryConfig, resource: Any, processors: list[Any],
                   readers: list[Any]) -> tuple[Any, Any, Any]:
    """The Azure Monitor distro's global providers (or ones already installed, e.g. by the
    Functions worker), with the platform's id generator and the other exporters added."""
    from opentelemetry.sdk.trace import TracerProvider

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        log.info("telemetry: OpenTelemetry is configured already in this process; adding the span exporters to "
                 "its tracer provider (its meter provider keeps its own readers)")
        provider = trace.get_tracer_provider()
        for processor in processors:
            provider.add_span_processor(processor)  # type: ignore[attr-defined]
    else:
        from azure.monitor.opentelemetry import configure_azure_monitor

        # every trace unless OTEL_TRACES_SAMPLER says otherwise: the distro's default (5 traces per
        # second) would cut a turn's trace apart across the apps
        sampling = {} if config.sampler else {"sampling_ratio": 1.0}
        configure_azure_monitor(connection_string=config.connection_string, resource=resource,
                                span_processors=processors, metric_readers=readers, **sampling)
        provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.id_generator = _id_generator()  # read by the tracers created from now on
    from opentelemetry._logs import get_logger_provider

    return provider, metrics.get_meter_provider(), get_logger_provider()


_current: Telemetry | None = None
_lock = threading.RLock()


def current() -> Telemetry | None:
    return _current


def _install(telemetry: Telemetry | None) -> Telemetry | None:
    global _current
    with _lock:
        previous, _current = _current, telemetry
    return previous


def ensure_configured() -> Telemetry:
    """The process's telemetry, configured from the app settings if nothing configured it yet.
    Settings that cannot work are logged (naming the setting) and telemetry stays off: a typo in
    a telemetry setting must not stop the agents."""
    found = _current
    if found is not None:
        return found
    with _lock:
        if _current is not None:
            return _current
        try:
            telemetry = build(from_settings())
        except (TelemetryConfigError, ValueError, ImportError, OSError) as error:
            log.error("telemetry is off: %s", error)
            telemetry = build(TelemetryConfig(service_name="aos", disabled=True), note=f"off: {error}")
        _install(telemetry)
        return telemetry


def configure(config: TelemetryConfig | None = None, *, local_file: Path | None = None) -> Telemetry:
    """Configure now from ``config`` (default: the settings), replacing (and shutting down) what
    was configured before; raises :class:`TelemetryConfigError` for settings that cannot work."""
    telemetry = build(config or from_settings(local_file=local_file))
    previous = _install(telemetry)
    if previous is not None:
        previous.shutdown()
    return telemetry


def configure_local(state_dir: Path) -> Telemetry | None:
    """For ``aos run``: configure from the settings, JSON lines under ``state_dir`` by default.
    ``None`` when a test pinned its own telemetry (:func:`capture`), which then stays."""
    with _lock:
        if _current is not None and _current.pinned:
            return None
        return configure(local_file=Path(state_dir) / LOCAL_SPANS_FILE)


def release(telemetry: Telemetry | None) -> None:
    """Flush and shut down ``telemetry``; if it is the process's current one, nothing is configured after."""
    if telemetry is None:
        return
    with _lock:
        if _current is telemetry:
            _install(None)
    telemetry.shutdown()


@dataclass
class Captured:
    """What :func:`capture` collects: finished spans and a metric reader to collect from."""

    spans: Any
    metrics: Any
    telemetry: Telemetry


@contextlib.contextmanager
def capture(span_exporter: Any = None, metric_reader: Any = None, *, log_format: str = "text") -> Iterator[Captured]:
    """For tests: every span and metric of the block in memory (an ``InMemorySpanExporter`` and an
    ``InMemoryMetricReader``, or the ones given), exported synchronously. ``aos run``'s platform
    leaves it in place."""
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )

    exporter = span_exporter if span_exporter is not None else InMemorySpanExporter()
    reader = metric_reader if metric_reader is not None else InMemoryMetricReader()
    config = TelemetryConfig(service_name="aos-test", console="off", log_format=log_format)
    telemetry = build(config, span_processors=[SimpleSpanProcessor(exporter)], metric_readers=[reader], pinned=True,
                      note="captured in memory (tests)")
    previous = _install(telemetry)
    try:
        yield Captured(exporter, reader, telemetry)
    finally:
        _install(previous)
        telemetry.shutdown()
