"""The three Function Apps built from one package, selected by AOS_APP_ROLES."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import azure.functions as func

from kernel import settings

#: Role name -> modules whose ``bp`` are that role's blueprints. Imported only when selected, so
#: an app pays the import cost of its own role only.
ROLE_BLUEPRINTS: dict[str, tuple[str, ...]] = {
    "kernel": ("kernel.blueprint", "kernel.workflows.blueprint"),
    "realm": ("realm_of_agents.blueprint",),
    "mcp": ("mcp_servers.blueprint", "mcp_servers.remote"),
}

#: Modules every app serves whatever its roles: the health routes that probes call on each app.
COMMON_BLUEPRINTS: tuple[str, ...] = ("kernel.health.blueprint",)


def selected_roles(environ: Mapping[str, str] | None = None) -> list[str]:
    """Roles named in AOS_APP_ROLES, in canonical order; all of them when unset or empty."""
    raw = settings.get("AOS_APP_ROLES", environ)
    names = [part.strip().lower() for part in raw.split(",") if part.strip()]
    unknown = [name for name in names if name not in ROLE_BLUEPRINTS]
    if unknown:
        raise ValueError(
            f"AOS_APP_ROLES names unknown role(s) {', '.join(unknown)}: "
            f"expected a comma list of {', '.join(ROLE_BLUEPRINTS)}"
        )
    return [role for role in ROLE_BLUEPRINTS if not names or role in names]


def blueprints(role: str, environ: Mapping[str, str] | None = None) -> list[func.Blueprint]:
    """The role's blueprints, imported now. The first selected role also carries COMMON_BLUEPRINTS,
    so every app serves them, and an app serving several roles registers them once."""
    names = ROLE_BLUEPRINTS[role]
    if role == selected_roles(environ)[0]:
        names = COMMON_BLUEPRINTS + names
    return [importlib.import_module(name).bp for name in names]
