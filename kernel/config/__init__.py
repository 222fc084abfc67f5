"""Config: pydantic models (the source of truth), loading with precise problems, JSON Schemas."""

from kernel.config.loader import ConfigSet, Source, load_configs
from kernel.config.models import AdapterConfig, AgentConfig, McpServerConfig
from kernel.config.problems import Problem

__all__ = [
    "AdapterConfig",
    "AgentConfig",
    "ConfigSet",
    "McpServerConfig",
    "Problem",
    "Source",
    "load_configs",
]
