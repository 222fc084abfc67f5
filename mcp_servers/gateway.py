"""The tool gateway: an agent's granted MCP tools, called through the server manager.

Whoever asks — a turn over Service Bus (``mcp_servers.bus``), or an operator through the HTTP API
and ``aos mcp call --as AGENT`` — the gateway is where the rules hold:

* **Allow-lists.** Every request names the calling agent; the gateway reads that agent's grants
  from its current config (whole servers, or single tools) and refuses anything else. A tool
  result is data, never a way to reach a tool the agent was not given. Refusals are results the
  turn records (``is_error`` with ``error: "ToolDenied"``), and every refusal and every call is
  written to the agent's audit chain, arguments redacted and the result as a digest.
* **One call per call id.** The first request of a call id (turn id and call index) inserts a
  create-only claim row (table ``toolcalls``, PartitionKey the agent); only the request that wins
  it calls the tool, and the result is kept on that row (or, above 30,000 characters, in the blob
  ``toolcalls/<agent>/<digest>.json`` the row names) before it is audited or answered. A repeated request — redelivered, retried, or concurrent — loses the claim and gets
  that result back; it takes over only when the claim goes stale (a live holder renews it every
  few seconds; a dead one does not). Tools a server config lists under ``tools.idempotent`` are
  safe to repeat and are simply called again.
* **Rate limits.** A granted call still has to fit the tool-call rate limits of the agent's
  policies (``kernel.governance.policy_guard``): the request that wins the claim is counted, and
  one over the limit is not run; its answer is an error result (``error: "PolicyRefused"``) kept on
  the claim like any result, so a redelivery gets the same answer, and ``policy.refused`` is
  audited. Idempotent tools are counted at every request.
* **Namespaces.** MCP servers belong to a namespace: an agent's grant ``server: github`` means its
  own namespace's ``github`` (``kernel.namespaces``), and a request names the server as the grant
  does. A grant of another namespace's server (``default.everything``) holds only while a route of
  the agent's namespace allows that tool; otherwise the call is refused (``tool.denied``) like any
  tool the agent was not given.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from kernel import namespaces as ns
from kernel.config.loader import ConfigSet
from kernel.config.models import ToolGrant
from kernel.governance.policy_guard import PolicyGuard, refused_result
from kernel.governance.redaction import digest, redact
from kernel.ports import AlreadyExists, BlobStore, NotFound, TableStore
from kernel.toolbus import error_result
from kernel.workflows.ids import workflow_of_caller
from mcp_servers.manager import McpManagerError, McpServerManager

log = logging.getLogger("aos.mcp.gateway")

CALLS_CONTAINER = "toolcalls"
CLAIMS_TABLE = "toolcalls"
#: Results up to this size live on the call's table row (a property holds 64 KiB); bigger ones in a blob.
INLINE_RESULT_CHARS = 30_000
AUDIT_ATTEMPTS = 3
#: A call's holder renews its claim this often; a claim older than CLAIM_STALE_SECONDS is a dead holder's.
CLAIM_RENEW_SECONDS = 2.0
CLAIM_STALE_SECONDS = 8.0


class AuditSink(Protocol):
    async def append(self, chain: str, kind: str, *, actor: str, data: Mapping[str, Any],
                     subject: str | None = None) -> Any: ...


class ToolGateway:
    """Allow-lists, once-only calls and audit in front of an :class:`McpServerManager`."""

    def __init__(self, manager: McpServerManager, configs: Callable[[], ConfigSet], results: BlobStore,
                 claims: TableStore, audit: AuditSink | None = None, *, policy: PolicyGuard | None = None,
                 poll_seconds: float = 0.05) -> None:
        """``configs()`` returns the current configs: agents' grants and servers' settings come from it;
        ``policy`` enforces the policies' tool-call rate limits (none without it)."""
        self._manager = manager
        self._policy = policy
        self._configs = configs
        self._results = results
        self._claims = claims
        self._audit = audit
        self._poll = poll_seconds

    @property
    def manager(self) -> McpServerManager:
        return self._manager

    # -- requests ------------------------------------------------------------------------------

    async def list_tools(self, agent_id: str) -> dict[str, Any]:
        """The tools the agent may call, and why a granted server is not offered when it is not."""
        grants = self._grants(agent_id)
        if grants is None:
            return {"tools": [], "unavailable": {}, "error": f"no agent '{agent_id}' is declared"}
        tools: list[dict[str, Any]] = []
        unavailable: dict[str, str] = {}
        health = self._manager.health()
        for grant in grants:
            address = ns.resolve(ns.namespace_of(agent_id), grant.server)
            status = health.get(address)
            if status is None:
                unavailable[grant.server] = f"no MCP server '{grant.server}' is declared"
                continue
            if not status.get("available"):
                unavailable[grant.server] = f"MCP server '{grant.server}' is {status.get('state')}" + (
                    f": {status['last_error']}" if status.get("last_error") else "")
                continue
            for tool in self._manager.list_tools(address):
                if (grant.tools is None or tool["name"] in grant.tools) \
                        and self._refusal(agent_id, grant.server, tool["name"]) is None:
                    tools.append({"server": grant.server, **tool})
        return {"tools": tools, "unavailable": unavailable}

    async def call_tool(self, agent_id: str, server: str, tool: str, arguments: Mapping[str, Any], *,
                        call_id: str, actor: str = "turn") -> dict[str, Any]:
        """Call a granted tool once per ``call_id``; refusals and failures come back as error results."""
        refusal = self._refusal(agent_id, server, tool)
        if refusal is not None:
            await self._record(agent_id, "tool.denied", actor, {
                "server": server, "tool": tool, "call_id": call_id, "reason": refusal,
                "arguments": redact(dict(arguments))})
            return error_result(f"denied: {refusal}", error="ToolDenied")
        config = self._configs().mcp_servers.get(self._address(agent_id, server))
        if config is not None and tool in config.tools.idempotent:
            refused = await self._over_limit(agent_id, server, tool, call_id)
            if refused is not None:
                return refused
            return await self._call_and_audit(agent_id, server, tool, arguments, call_id, actor)
        return await self._once(agent_id, server, tool, arguments, call_id, actor)

    async def list_resources(self, agent_id: str, server: str) -> dict[str, Any]:
        refusal = self._refusal(agent_id, server, None)
        if refusal is not None:
            return {"resources": [], "error": f"denied: {refusal}"}
        try:
            return {"resources": await self._manager.list_resources(self._address(agent_id, server))}
        except (McpManagerError, TimeoutError) as error:
            return {"resources": [], "error": str(error) or type(error).__name__}

    async def read_resource(self, agent_id: str, server: str, uri: str) -> dict[str, Any]:
        refusal = self._refusal(agent_id, server, None)
        if refusal is not None:
            return {"contents": [], "error": f"denied: {refusal}"}
        try:
            return {"contents": await self._manager.read_resource(self._address(agent_id, server), uri)}
        except (McpManagerError, TimeoutError) as error:
            return {"contents": [], "error": str(error) or type(error).__name__}

    async def close(self) -> None:
        await self._manager.close()

    # -- rules ---------------------------------------------------------------------------------

    def _grants(self, agent_id: str) -> list[ToolGrant] | None:
        """The caller's grants: an agent's, or a workflow's (callers ``[namespace.]workflow:<id>``)."""
        configs = self._configs()
        workflow = workflow_of_caller(agent_id)
        found = configs.agents.get(agent_id) if workflow is None else configs.workflows.get(workflow)
        return None if found is None else list(found.tools)

    @staticmethod
    def _address(agent_id: str, server: str) -> str:
        """The server a request names, as the agent's namespace resolves it (the manager's key)."""
        return ns.resolve(ns.namespace_of(agent_id), server)

    def _refusal(self, agent_id: str, server: str, tool: str | None) -> str | None:
        """Why the agent may not use ``server``'s ``tool`` (any tool when ``None``), or ``None``."""
        grants = self._grants(agent_id)
        if grants is None:
            return f"no agent '{agent_id}' is declared"
        address = self._address(agent_id, server)
        for grant in grants:
            if self._address(agent_id, grant.server) == address:
                if tool is not None and grant.tools is not None and tool not in grant.tools:
                    return (f"agent '{agent_id}' is granted only {', '.join(grant.tools)} of MCP server "
                            f"'{server}', not '{tool}'")
                return self._crossing(agent_id, address, tool)
        return f"agent '{agent_id}' is not granted MCP server '{server}'"

    def _crossing(self, agent_id: str, address: str, tool: str | None) -> str | None:
        """Why a server of another namespace is out of reach (no route for it now), or ``None``."""
        source = ns.namespace_of(agent_id)
        target, server_id = ns.split(address)
        name = server_id if tool is None else f"{server_id}.{tool}"
        if ns.routed(self._configs().namespaces, source, target, "tools", name):
            return None
        return ns.route_refusal(source, target, "tools", name)

    async def _over_limit(self, agent_id: str, server: str, tool: str, call_id: str) -> dict[str, Any] | None:
        """The ``PolicyRefused`` result when the call does not fit the agent's rate limits (counted if it does)."""
        if self._policy is None:
            return None
        prefix, _, index = call_id.rpartition(":")  # a turn's call id is "<turn id>:<index>"
        turn_id = prefix if prefix and index.isdigit() else None
        refusal = await self._policy.admit_tool_call(agent_id, server=server, tool=tool, turn_id=turn_id,
                                                     call_id=call_id)
        return refused_result(refusal) if refusal is not None else None

    # -- calls ---------------------------------------------------------------------------------

    async def _call(self, address: str, tool: str, arguments: Mapping[str, Any]) -> tuple[dict[str, Any], float]:
        started = time.perf_counter()
        try:
            result = await self._manager.call_tool(address, tool, arguments)
        except McpManagerError as error:
            result = error_result(str(error), error=type(error).__name__)
        return result, round((time.perf_counter() - started) * 1000, 1)

    async def _call_and_audit(self, agent_id: str, server: str, tool: str, arguments: Mapping[str, Any],
                              call_id: str, actor: str, *, claim: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call, keep the result (on its ``claim``) before anything else can fail, then audit."""
        result, elapsed = await self._call(self._address(agent_id, server), tool, arguments)
        if claim is not None:
            await self._keep(claim, result)
        await self._record(agent_id, "tool.call", actor, {
            "server": server, "tool": tool, "call_id": call_id, "arguments": redact(dict(arguments)),
            "is_error": bool(result.get("is_error")), "error": result.get("error"),
            "result_digest": digest(result), "ms": elapsed})
        return result

    async def _once(self, agent_id: str, server: str, tool: str, arguments: Mapping[str, Any], call_id: str,
                    actor: str) -> dict[str, Any]:
        """The claim (a create-only table row) comes first: only its winner calls the tool."""
        key = hashlib.sha256(call_id.encode()).hexdigest()[:32]
        claim = {"PartitionKey": agent_id, "RowKey": key, "call_id": call_id, "at": time.time()}
        try:
            await self._claims.insert(CLAIMS_TABLE, claim)
        except AlreadyExists:  # asked before: the kept result, or another delivery is calling it now
            found = await self._wait_for(agent_id, key)
            if found is not None:
                return found
            await self._claims.upsert(CLAIMS_TABLE, {**claim, "at": time.time()})  # its holder died: take over
        refused = await self._over_limit(agent_id, server, tool, call_id)
        if refused is not None:
            await self._keep(claim, refused)  # a redelivery gets the same answer, and is not counted again
            return refused
        renewing = asyncio.create_task(self._renew(claim))
        try:
            return await self._call_and_audit(agent_id, server, tool, arguments, call_id, actor, claim=claim)
        finally:
            renewing.cancel()

    async def _keep(self, claim: dict[str, Any], result: dict[str, Any]) -> None:
        """The result on the claim row; one too big for a table property goes to a blob it names."""
        text = json.dumps(result)
        if len(text) <= INLINE_RESULT_CHARS:
            await self._claims.upsert(CLAIMS_TABLE, {**claim, "result": text})
            return
        name = f"{claim['PartitionKey']}/{claim['RowKey']}.json"
        await self._results.put(CALLS_CONTAINER, name, text.encode(), content_type="application/json")
        await self._claims.upsert(CLAIMS_TABLE, {**claim, "result_blob": name})

    async def _renew(self, claim: dict[str, Any]) -> None:
        """Keep the claim fresh while the call runs, so waiters know its holder is alive."""
        while True:
            await asyncio.sleep(CLAIM_RENEW_SECONDS)
            with contextlib.suppress(Exception):
                await self._claims.upsert(CLAIMS_TABLE, {**claim, "at": time.time()})

    async def _wait_for(self, agent_id: str, key: str) -> dict[str, Any] | None:
        """The kept result, or ``None`` once the claim has gone stale (its holder died)."""
        while True:
            try:
                row = await self._claims.get(CLAIMS_TABLE, agent_id, key)
            except NotFound:
                return None
            if row.get("result"):
                return json.loads(row["result"])
            if row.get("result_blob"):
                return json.loads(await self._results.get(CALLS_CONTAINER, row["result_blob"]))
            if time.time() - float(row.get("at") or 0) > CLAIM_STALE_SECONDS:
                return None
            await asyncio.sleep(self._poll)

    async def _record(self, agent_id: str, kind: str, actor: str, data: dict[str, Any]) -> None:
        """Append to the agent's audit chain, retrying a failing store a few times. A record that
        still cannot be written is logged (never the arguments) and the answer goes out: the call
        has happened and its result is stored, so failing now would only hide that."""
        if self._audit is None:
            return
        for attempt in range(AUDIT_ATTEMPTS):
            try:
                await self._audit.append(agent_id, kind, actor=actor, data=data,
                                         subject=f"{data['server']}.{data['tool']}")
                return
            except Exception as error:  # noqa: BLE001 - storage errors of any adapter
                if attempt == AUDIT_ATTEMPTS - 1:
                    log.error("audit record %s for %s call %s could not be written: %s", kind, agent_id,
                              data.get("call_id"), type(error).__name__)
                    return
                await asyncio.sleep(0.2 * 2 ** attempt)
