"""The dependencies each role uses, as readiness checks (see ``kernel.health.report``).

============  ======================================================  ========
role          checks                                                  required
============  ======================================================  ========
every role    ``storage:tables``, ``storage:blobs``                   yes
every role    ``bus:<topic>`` for each topic the role sends to        yes
realm         ``model:<endpoint>`` for each endpoint its agents call  no
mcp           ``mcp:<server>`` for each enabled MCP server            no
============  ======================================================  ========

Each check is a real round trip through the same ports and services the functions use: storage
reads a missing entity and a missing blob (not found means the service answered and let us in);
the bus proves each topic can be sent to (``MessageSender.probe``: a store query on the engine,
a fresh AMQP link in Azure); a model endpoint reports its circuit breaker and is reached over TCP
(agents answered by the offline provider get one ``model:offline`` check, labelled); an MCP
server reports the supervisor's state (starting its servers when this instance has not yet).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from kernel import runtime
from kernel.adapters.factory import Adapters
from kernel.config.loader import ConfigSet
from kernel.config.drop import current_configs
from kernel.governance.redaction import mask
from kernel.health.report import (
    DEGRADED,
    FAILED,
    OK,
    Check,
    CheckResult,
    Outcome,
    run_checks,
    secret_values,
    verdict,
)
from kernel.inference.breaker import HALF_OPEN, OPEN
from kernel.ports import NotFound
from kernel.topology import AGENT_EVENTS, AGENT_OUTPUTS, MCP_REQUESTS, MCP_RESPONSES

#: Names read by the storage probes; nothing is ever written there.
PROBE_TABLE, PROBE_CONTAINER, PROBE_KEY = "aoshealth", "aos-health", "probe"

#: The topics each role sends to (the realm publishes, asks for tools and sends events; the MCP app
#: answers tool calls and sends events for its remote tools; the kernel forwards agents' events).
SENDS: dict[str, tuple[str, ...]] = {
    "kernel": (AGENT_EVENTS,),
    "realm": (AGENT_EVENTS, AGENT_OUTPUTS, MCP_REQUESTS),
    "mcp": (AGENT_EVENTS, MCP_RESPONSES),
}

#: MCP supervisor state (``mcp_servers.supervisor``'s, spelled out so that importing the kernel's
#: health routes does not import the MCP SDK) -> (status, error code).
_MCP_STATES: dict[str, tuple[str, str | None]] = {
    "ready": (OK, None),
    "starting": (DEGRADED, "Starting"),
    "failed": (FAILED, "Failed"),
    "circuit-open": (FAILED, "CircuitOpen"),
    "stopped": (FAILED, "Stopped"),
}


async def readiness(roles: Sequence[str], *, timeout: float, environ: Mapping[str, str]) -> tuple[str, list[CheckResult]]:
    """The verdict and every check's result for an app serving ``roles``."""
    adapters = runtime.adapters()
    configs = await current_configs()
    checks = storage_checks(adapters) + bus_checks(adapters, roles)
    if "realm" in roles:
        checks += await model_checks(configs, environ)
    if "mcp" in roles:
        checks += mcp_checks(configs, inner_timeout=timeout * 0.8)
    results = await run_checks(checks, timeout=timeout, secrets=secret_values(environ))
    return verdict(results), results


# -- storage and bus ---------------------------------------------------------------------------


def storage_checks(adapters: Adapters) -> list[Check]:
    async def tables() -> Outcome:
        try:
            await adapters.tables.get(PROBE_TABLE, PROBE_KEY, PROBE_KEY)
        except NotFound:
            pass
        return Outcome(detail={**_storage(adapters), "probe": f"read entity ({PROBE_KEY}, {PROBE_KEY}) of table "
                                                              f"{PROBE_TABLE}: not found is the expected answer"})

    async def blobs() -> Outcome:
        await adapters.blobs.exists(PROBE_CONTAINER, PROBE_KEY)
        return Outcome(detail={**_storage(adapters), "probe": f"ask whether blob {PROBE_CONTAINER}/{PROBE_KEY} exists"})

    return [Check("storage:tables", "storage", True, tables), Check("storage:blobs", "storage", True, blobs)]


def _storage(adapters: Adapters) -> dict[str, str]:
    selection = adapters.selection()
    return {"backend": selection.storage, "target": selection.storage_target}


def bus_checks(adapters: Adapters, roles: Sequence[str]) -> list[Check]:
    topics = sorted({topic for role in roles for topic in SENDS.get(role, ())})

    def probe(topic: str) -> Check:
        async def run() -> Outcome:
            await adapters.sender.probe(topic)
            selection = adapters.selection()
            return Outcome(detail={"backend": selection.messaging, "target": selection.messaging_target,
                                   "probe": f"prove topic {topic} can be sent to (nothing is sent)"})

        return Check(f"bus:{topic}", "bus", True, run)

    return [probe(topic) for topic in topics]


# -- model endpoints ---------------------------------------------------------------------------


async def model_checks(configs: ConfigSet, environ: Mapping[str, str]) -> list[Check]:
    """One check per endpoint the agents' calls go to; agents on the offline provider share one."""
    from realm_of_agents.services import services

    realm = services()
    router = await realm.inference()
    targets: dict[str, tuple[str | None, list[str]]] = {}
    for agent_id in sorted(configs.agents):
        endpoint_id = configs.agents[agent_id].model.endpoint
        try:
            spec, _ = router.endpoint(endpoint_id)
            name = "model:offline" if spec is None else f"model:{spec.id}"
        except Exception:  # noqa: BLE001 - the check itself reports what is wrong with it
            name = f"model:{endpoint_id or 'default'}"
        targets.setdefault(name, (endpoint_id, []))[1].append(agent_id)

    def check(name: str, endpoint_id: str | None, agents: list[str]) -> Check:
        async def run() -> Outcome:
            if name == "model:offline":
                notes = {agent: router.health(configs.agents[agent].model.endpoint)["note"] for agent in agents}
                return Outcome(OK, detail={"provider": "offline", "offline": True, "agents": notes,
                                           "label": "answers are labelled [offline]: no model is called"})
            return await _endpoint(router, endpoint_id, agents, environ, realm.adapters.secrets)

        return Check(name, "model", False, run)

    return [check(name, endpoint_id, agents) for name, (endpoint_id, agents) in sorted(targets.items())]


async def _endpoint(router: Any, endpoint_id: str | None, agents: list[str], environ: Mapping[str, str],
                    secrets: Any) -> Outcome:
    from kernel.inference.auth import resolve_references
    from kernel.inference.openai_compatible import endpoint_host

    snapshot = router.health(endpoint_id)
    detail = {**snapshot, "agents": agents}
    circuit = snapshot["circuit"]
    if circuit["state"] == OPEN:
        until = f"until {circuit['open_until']}" if circuit["open_until"] else "until its next call, a trial"
        return Outcome(FAILED, "CircuitOpen", f"circuit open {until} after {circuit['failures']} failed calls in a "
                                              f"row; last error: {circuit['last_error']}", detail)
    spec, _ = router.endpoint(endpoint_id)
    url = await resolve_references(spec.url, environ, secrets)
    try:
        await _connect(url)
    except OSError as error:
        text = f"{endpoint_host(url)} is not reachable over TCP: {error.strerror or error}"
        return Outcome(FAILED, type(error).__name__, mask(text, [url]), detail)
    if circuit["state"] == HALF_OPEN:
        return Outcome(DEGRADED, "CircuitHalfOpen", f"a trial call is under way after {circuit['failures']} failed "
                                                    f"calls; last error: {circuit['last_error']}", detail)
    return Outcome(OK, detail=detail)


async def _connect(url: str) -> None:
    """Open and close a TCP connection to the URL's host and port: reachability, nothing sent."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError("the endpoint URL has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    _, writer = await asyncio.open_connection(parts.hostname, port)
    writer.close()
    await writer.wait_closed()


# -- MCP servers -------------------------------------------------------------------------------


def mcp_checks(configs: ConfigSet, *, inner_timeout: float) -> list[Check]:
    """One check per enabled MCP server, all answered from one look at the manager's health."""
    enabled = sorted(server_id for server_id, config in configs.mcp_servers.items() if config.enabled)
    fetched: list[asyncio.Future[dict[str, dict[str, Any]] | None]] = []

    async def health() -> dict[str, dict[str, Any]] | None:
        if not fetched:
            from mcp_servers.services import services

            fetched.append(asyncio.ensure_future(services().server_health(inner_timeout)))
        return await asyncio.shield(fetched[0])

    def check(server_id: str) -> Check:
        async def run() -> Outcome:
            servers = await health()
            if servers is None:
                return Outcome(DEGRADED, "Starting", f"the MCP servers are still starting after {inner_timeout:g} s")
            found = servers.get(server_id)
            if found is None:
                return Outcome(DEGRADED, "NotStarted", f"MCP server {server_id} is not started on this instance yet")
            status, code = _MCP_STATES.get(found["state"], (FAILED, "Unknown"))
            message = found.get("last_error") if status != OK else None
            return Outcome(status, code, message, detail=found)

        return Check(f"mcp:{server_id}", "mcp", False, run)

    return [check(server_id) for server_id in enabled]
