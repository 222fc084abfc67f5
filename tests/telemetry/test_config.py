"""Which exporters the settings select, and the errors for settings that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.settings import APP_ROOT
from kernel.telemetry.config import TelemetryConfigError, from_settings
from kernel.telemetry.setup import build

CONNECTION = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://example.invalid/"


def test_nothing_configured_means_json_lines_on_stderr_and_all_roles_are_one_service() -> None:
    config = from_settings({})
    assert (config.console, config.azure_monitor, config.otlp_endpoint, config.disabled) == ("stderr", False, "", False)
    assert config.service_name == "aos" and config.log_format == "text"
    assert "JSON lines on stderr" in config.describe()


def test_the_local_platform_defaults_to_a_file_in_its_state_folder(tmp_path: Path) -> None:
    config = from_settings({}, local_file=tmp_path / "telemetry" / "spans.jsonl")
    assert config.console_file == tmp_path / "telemetry" / "spans.jsonl"
    assert str(tmp_path) in config.describe()


def test_each_app_is_its_own_service() -> None:
    assert from_settings({"AOS_APP_ROLES": "realm"}).service_name == "aos-realm"
    assert from_settings({"AOS_APP_ROLES": "mcp"}).service_name == "aos-mcp"
    assert from_settings({"AOS_APP_ROLES": "kernel", "OTEL_SERVICE_NAME": "ops-kernel"}).service_name == "ops-kernel"


def test_azure_monitor_when_the_connection_string_is_set_and_the_console_goes_quiet() -> None:
    config = from_settings({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION})
    assert config.azure_monitor and config.console == "off" and not config.otlp_endpoint
    assert "Azure Monitor" in config.describe()
    # the connection string is never shown
    assert "00000000" not in config.describe() and "00000000" not in repr(config)


def test_otlp_when_an_endpoint_is_set_both_when_both_are_and_console_only_when_asked() -> None:
    otlp = from_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert otlp.otlp_endpoint == "http://collector:4318" and otlp.console == "off" and not otlp.azure_monitor
    both = from_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otlp.example", "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION,
                          "AOS_TELEMETRY_CONSOLE": "stdout"})
    assert both.azure_monitor and both.otlp_endpoint == "https://otlp.example" and both.console == "stdout"
    assert "Azure Monitor" in both.describe() and "OTLP https://otlp.example" in both.describe()


def test_console_destinations() -> None:
    assert from_settings({"AOS_TELEMETRY_CONSOLE": "OFF"}).console == "off"
    assert "nowhere" in from_settings({"AOS_TELEMETRY_CONSOLE": "off"}).describe()
    assert from_settings({"AOS_TELEMETRY_CONSOLE": "logs/spans.jsonl"}).console_file == APP_ROOT / "logs" / "spans.jsonl"
    assert from_settings({"AOS_TELEMETRY_CONSOLE": "/var/tmp/x.jsonl"}).console_file == Path("/var/tmp/x.jsonl")


@pytest.mark.parametrize(("settings", "named", "hidden"), [
    ({"AOS_TELEMETRY_CONSOLE": "stdrr"}, "AOS_TELEMETRY_CONSOLE", None),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT", None),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://user:hunter2@host"}, "OTEL_EXPORTER_OTLP_ENDPOINT", "hunter2"),
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL", None),
    ({"AOS_LOG_FORMAT": "xml"}, "AOS_LOG_FORMAT", None),
    ({"OTEL_SDK_DISABLED": "yes"}, "OTEL_SDK_DISABLED", None),
    ({"APPLICATIONINSIGHTS_CONNECTION_STRING": "IngestionEndpoint=https://x/;sekrit-value"},
     "APPLICATIONINSIGHTS_CONNECTION_STRING", "sekrit-value"),
])
def test_settings_that_cannot_work_are_refused_naming_the_setting(settings: dict[str, str], named: str,
                                                                  hidden: str | None) -> None:
    with pytest.raises(TelemetryConfigError) as raised:
        from_settings(settings)
    assert named in str(raised.value)
    if hidden:
        assert hidden not in str(raised.value)


def test_disabled_builds_no_op_providers_that_record_nothing() -> None:
    config = from_settings({"OTEL_SDK_DISABLED": "true"})
    assert config.disabled and "off" in config.describe()
    telemetry = build(config)
    with telemetry.tracer.start_as_current_span("x") as span:
        assert not span.is_recording() and not span.get_span_context().is_valid
    telemetry.shutdown()

