"""What a workflow may reach: the agents and workflows of its own namespace, and of another only
through a route of its namespace document (``kernel.namespaces.routed``).

One rule for every place a workflow crosses: the config check at load (an agent step or a
compensation naming another namespace's agent), the send activity of every agent event at run
time (a route withdrawn while a run is in flight fails the step, audited), and events that start
runs (a broadcast of namespace A starts a workflow of B only when A routes to it). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kernel import namespaces as ns

__all__ = ["refusal", "split_tool"]


def refusal(namespaces: Mapping[str, Any], source: str, kind: ns.RouteKind, address: str) -> str | None:
    """Why namespace ``source`` may not reach the agent or workflow at ``address`` (an address,
    already resolved), or ``None`` when it may."""
    target, bare = ns.split(address)
    if ns.routed(namespaces, source, target, kind, bare):
        return None
    return ns.route_refusal(source, target, kind, bare)


def split_tool(reference: str, granted: Iterable[str] = ()) -> tuple[str, str]:
    """A tool step's ``server.tool`` as (server, tool). Tool names may hold dots, so the workflow's
    grants decide where the server ends: ``default.everything.echo`` is tool ``echo`` of
    ``default.everything`` when the workflow is granted that server under that name (the longest
    granted name wins); otherwise the server is the part before the first dot, a server of the
    workflow's own namespace."""
    for server in sorted(granted, key=len, reverse=True):
        if len(reference) > len(server) + 1 and reference.startswith(f"{server}."):
            return server, reference[len(server) + 1:]
    server, _, tool = reference.partition(".")
    return server, tool
