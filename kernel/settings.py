"""Every app setting AOS reads, in one place.

Functions apps are configured through app settings (environment variables in Azure, ``Values``
in ``local.settings.json`` locally). Reading them only through this module keeps the list
honest: a test checks that ``local.settings.sample.json`` names every setting declared here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    description: str


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("AOS_APP_ROLES", "", "Comma list of kernel, realm, mcp; empty runs all three."),
        Setting(
            "AOS_CONFIG_PATHS",
            "agent_configs,mcp_configs,workflow_configs",
            "Comma list of config files or folders, relative to the app root.",
        ),
        Setting("AOS_TASK_HUB", "aos", "Durable Functions task hub name (host.json reads it)."),
        Setting(
            "AOS_REALM_TASK_HUB",
            "aos",
            "The RealmOfAgents app's task hub, where the kernel raises MCP tool answers in waiting turns; "
            "equal to AOS_TASK_HUB when one app serves every role.",
        ),
        Setting(
            "ServiceBusConnection",
            "",
            "Service Bus connection: a connection string locally, or "
            "ServiceBusConnection__fullyQualifiedNamespace with managed identity in Azure.",
        ),
        Setting(
            "AOS_STORAGE",
            "embedded",
            "Where the blob and table ports keep data: embedded (files and SQLite under AOS_STATE_DIR) "
            "or azure (Blob and Table storage through AzureWebJobsStorage).",
        ),
        Setting("AOS_STATE_DIR", ".aos", "Folder for embedded state (blobs/, tables.sqlite), relative to the app root."),
        Setting(
            "AOS_EMBEDDED_SYNC",
            "normal",
            "Durability of the embedded engine, tables and blobs: normal (survives a killed process) or full "
            "(also a power cut: SQLite synchronous=FULL, blobs fsynced).",
        ),
        Setting(
            "AOS_TURN_INLINE_STEPS",
            "on",
            "on: a turn's policy activity also runs the steps after it that need no durable wait (for an agent "
            "without MCP tools, the archive and publish), checkpointed with it; off: each is its own activity.",
        ),
        Setting(
            "AOS_HISTORY_RETENTION_DAYS",
            "7",
            "Days the realm keeps a finished turn's (or command's) Durable history; older ones are purged hourly. "
            "The turn's archive record, the agent's state and the audit chain are kept. Approvals past their deadline "
            "and the MCP gateway's tool-call claims are deleted after the same time. 0 keeps all of them.",
        ),
        Setting(
            "AzureWebJobsStorage",
            "",
            "Storage connection string (UseDevelopmentStorage=true for Azurite); empty in Azure, where "
            "AzureWebJobsStorage__accountName (or __blobServiceUri and __tableServiceUri) use managed identity.",
        ),
        Setting("AzureWebJobsStorage__accountName", "", "Storage account name for managed identity connections."),
        Setting("AzureWebJobsStorage__blobServiceUri", "", "Blob endpoint for managed identity (overrides accountName)."),
        Setting("AzureWebJobsStorage__tableServiceUri", "", "Table endpoint for managed identity (overrides accountName)."),
        Setting(
            "AOS_MESSAGING",
            "embedded",
            "Where the message sender port sends: embedded (the embedded engine's bus) or azure (ServiceBusConnection).",
        ),
        Setting(
            "ServiceBusConnection__fullyQualifiedNamespace",
            "",
            "Service Bus namespace host (<name>.servicebus.windows.net) for managed identity.",
        ),
        Setting("AOS_KEY_VAULT_URL", "", "Key Vault URL for ${secret:NAME}; empty reads secrets from the environment."),
        Setting("AOS_SECRET_CACHE_SECONDS", "300", "How long Key Vault secret values are cached in memory."),
        Setting(
            "AOS_AUTH",
            "keys",
            "How HTTP callers prove who they are: 'keys' (function keys, checked by the host; a key holder "
            "is an admin) or 'entra' (Entra ID bearer tokens with the app roles reader, operator, admin).",
        ),
        Setting("AOS_AUTH_TENANT_ID", "", "With AOS_AUTH=entra: the Entra tenant whose tokens are accepted."),
        Setting("AOS_AUTH_AUDIENCE", "", "With AOS_AUTH=entra: accepted token audiences (comma list: app id URI, client id)."),
        Setting("AOS_AUTH_JWKS_URL", "", "With AOS_AUTH=entra: the signing keys' URL (default: the tenant's Entra keys)."),
        Setting(
            "AOS_INFERENCE_ENDPOINT",
            "",
            "Base URL of an OpenAI-compatible endpoint (Azure OpenAI /openai/v1, vLLM, LoRAX, Ollama); "
            "empty uses the offline provider, labelled [offline] in every output.",
        ),
        Setting("AOS_INFERENCE_MODEL", "", "Model (or deployment) name sent when an agent names no adapter."),
        Setting(
            "AOS_INFERENCE_API_KEY",
            "",
            "API key for the endpoint as a reference, ${secret:NAME} or ${env:NAME}; empty sends none "
            "(managed identity or a keyless local server).",
        ),
        Setting("AOS_INFERENCE_TIMEOUT_SECONDS", "60", "Per-request timeout of a model call."),
        Setting(
            "AOS_CONFIG_CONTAINER",
            "",
            "Blob container whose agent configs every instance mirrors (every 30 s) into "
            "AOS_STATE_DIR/config-drop/agent_configs and loads beside AOS_CONFIG_PATHS; empty turns it off.",
        ),
        Setting(
            "AOS_URL",
            "http://127.0.0.1:7071",
            "Base URL of a running platform, for the aos commands that talk to one (aos agents, aos send-event).",
        ),
        Setting(
            "AOS_ADAPTER_REGISTRY_DIR",
            "",
            "Local LoRA adapter registry folder (aos adapters); empty is AOS_STATE_DIR/adapters.",
        ),
        Setting("AOS_AML_SUBSCRIPTION_ID", "", "Azure ML workspace subscription, for aos adapters train / register."),
        Setting("AOS_AML_RESOURCE_GROUP", "", "Azure ML workspace resource group."),
        Setting("AOS_AML_WORKSPACE", "", "Azure ML workspace name; empty: adapters train locally or as --dry-run YAML only."),
        Setting(
            "AOS_AML_COMPUTE",
            "",
            "Azure ML compute cluster for training jobs when the adapter names none; empty runs on serverless compute.",
        ),
        Setting(
            "AOS_AML_ENVIRONMENT",
            "",
            "Registered Azure ML environment for training jobs (azureml:NAME:VERSION); empty builds one from the pins.",
        ),
        Setting(
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
            "",
            "Application Insights connection string: when set, traces, metrics and logs go to Azure Monitor "
            "(azure-monitor-opentelemetry, imported only then). With local auth disabled the exporter signs in "
            "with APPLICATIONINSIGHTS_AUTHENTICATION_STRING (managed identity). Never logged.",
        ),
        Setting(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "",
            "Base URL of an OTLP/HTTP collector (e.g. http://localhost:4318): traces to /v1/traces, metrics to "
            "/v1/metrics. Headers (an API key) go in OTEL_EXPORTER_OTLP_HEADERS, read by the exporter, never logged.",
        ),
        Setting(
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "http/protobuf",
            "OTLP protocol; only http/protobuf is supported (the installed exporter).",
        ),
        Setting(
            "OTEL_TRACES_SAMPLER",
            "",
            "OpenTelemetry sampler, read by the SDK and the Azure Monitor distro (parentbased_always_on, "
            "parentbased_traceidratio with OTEL_TRACES_SAMPLER_ARG=0.25, microsoft.rate_limited, ...); empty keeps "
            "every trace (with Azure Monitor too, instead of the distro's default of 5 traces per second).",
        ),
        Setting("OTEL_SERVICE_NAME", "", "Service name on every span and metric; empty is aos-<roles> (aos for all three)."),
        Setting("OTEL_SDK_DISABLED", "false", "true turns tracing and metrics off (trace context still rides in envelopes)."),
        Setting(
            "AOS_TELEMETRY_CONSOLE",
            "",
            "Where spans and metrics go as JSON lines besides (or instead of) the exporters: off, stdout, stderr "
            "or a file path (relative to the app root). Empty: stderr when no exporter is configured, else off; "
            "`aos run` then writes AOS_STATE_DIR/telemetry/spans.jsonl (read it with `aos traces`).",
        ),
        Setting(
            "AOS_LOG_FORMAT",
            "text",
            "text, or json for one JSON object per log line with trace_id and span_id (for log queries).",
        ),
    )
}

APP_ROOT = Path(__file__).resolve().parent.parent


def get(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The value of a declared setting, or its default."""
    setting = SETTINGS[name]
    source = os.environ if environ is None else environ
    return source.get(name, setting.default)


def config_paths(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Config locations from AOS_CONFIG_PATHS; relative ones are taken from the app root."""
    raw = get("AOS_CONFIG_PATHS", environ)
    paths = [
        path if path.is_absolute() else APP_ROOT / path
        for path in (Path(part.strip()) for part in raw.split(",") if part.strip())
    ]
    if get("AOS_CONFIG_CONTAINER", environ):
        paths.append(config_drop_dir(environ))
    return paths


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    raw = Path(get("AOS_STATE_DIR", environ) or ".aos")
    return raw if raw.is_absolute() else APP_ROOT / raw


def config_drop_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where configs dropped into the AOS_CONFIG_CONTAINER blob container are mirrored."""
    return state_dir(environ) / "config-drop" / "agent_configs"


def adapter_registry_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The local adapter registry: AOS_ADAPTER_REGISTRY_DIR (relative to the app root), else AOS_STATE_DIR/adapters."""
    raw = get("AOS_ADAPTER_REGISTRY_DIR", environ).strip()
    if not raw:
        return state_dir(environ) / "adapters"
    path = Path(raw)
    return path if path.is_absolute() else APP_ROOT / path


def environment() -> Mapping[str, str]:
    """The app settings as the Functions host hands them to the worker: the process environment."""
    return os.environ


def override(values: Mapping[str, str]) -> Callable[[], None]:
    """Set app settings for this process, as a host would (the embedded platform uses this);
    returns the function that puts the previous values back."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)

    def restore() -> None:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    return restore
