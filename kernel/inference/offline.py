"""The offline provider: deterministic, no network, and labelled as such in every output.

It never pretends to be a model. It exists so that the whole turn path — purpose check, tool
calls through the MCP gateway, memory, routing — runs with no endpoint configured. Its rules:

* If the latest user message carries an explicit tool request (a JSON object with
  ``"tool_call": {"server": ..., "tool": ..., "arguments": {...}}`` anywhere in the event data)
  and that tool is among the offered tools, it requests exactly that call.
* After tool results arrive, it replies with a digest of them.
* Otherwise it replies with an acknowledgement built from the event itself.

Every reply starts with ``[offline]``; ``Completion.provider`` is ``"offline"``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kernel.inference.port import ChatMessage, ChatRequest, Completion, ToolCall, Usage, tool_name

NAME = "offline"
LABEL = "[offline]"
_DIGEST_CHARS = 240


class OfflineProvider:
    name = NAME

    async def complete(self, request: ChatRequest) -> Completion:
        return complete(request)


def complete(request: ChatRequest) -> Completion:
    """The deterministic answer to ``request`` (sync, so tests and activities can call it directly)."""
    last = request.messages[-1] if request.messages else ChatMessage("user", "")
    if last.role == "tool":
        content = _reply_from_tools(request.messages)
        return _completion(request, content, [])
    wanted = _requested_tool(last.content)
    offered = {spec.name for spec in request.tools}
    if wanted is not None:
        name = tool_name(wanted["server"], wanted["tool"])
        if name in offered:
            call_id = "call_" + hashlib.sha256(f"{request.agent_id}:{last.content}".encode()).hexdigest()[:12]
            return _completion(request, "", [ToolCall(call_id, name, dict(wanted.get("arguments") or {}))])
        content = f"{LABEL} The event asks for tool '{name}', which this agent is not offered; no call was made."
        return _completion(request, content, [])
    return _completion(request, f"{LABEL} Acknowledged: {_clip(last.content)}", [])


def _requested_tool(text: str) -> dict[str, Any] | None:
    """The first ``tool_call`` object inside the JSON found in ``text``, if any."""
    start = text.find("{")
    if start == -1:
        return None
    try:
        data, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError:
        return None
    return _find_tool_call(data)


def _find_tool_call(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        candidate = value.get("tool_call")
        if isinstance(candidate, dict) and isinstance(candidate.get("server"), str) and isinstance(candidate.get("tool"), str):
            return candidate
        for item in value.values():
            found = _find_tool_call(item)
            if found is not None:
                return found
    if isinstance(value, list):
        for item in value:
            found = _find_tool_call(item)
            if found is not None:
                return found
    return None


def _reply_from_tools(messages: list[ChatMessage]) -> str:
    results = []
    for message in reversed(messages):
        if message.role != "tool":
            break
        results.append(_clip(message.content))
    results.reverse()
    return f"{LABEL} Tool result{'s' if len(results) > 1 else ''}: " + " | ".join(results)


def _completion(request: ChatRequest, content: str, calls: list[ToolCall]) -> Completion:
    prompt = sum(_tokens(m.content) for m in request.messages)
    produced = _tokens(content) + sum(_tokens(json.dumps(c.arguments)) for c in calls)
    return Completion(content, calls, NAME, f"{NAME}/{request.model or 'none'}", Usage(prompt, produced))


def _tokens(text: str) -> int:
    """A rough count (words), labelled by the provider name; real endpoints report real usage."""
    return len(text.split())


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DIGEST_CHARS else text[: _DIGEST_CHARS - 1] + "…"
