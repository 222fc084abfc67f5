"""Agents' archived turns as chat JSONL for their adapter (``aos adapters export-data NAME``).

Each exported line is one turn, ``{"messages": [...], "metadata": {...}}``, in the shape
``train_lora`` reads, rebuilt from the archived turn record (``realm_of_agents.archive``) the way
the turn put it to the model:

* ``system``: the agent's system prompt from its config (identity, purpose, scope, success
  criteria; ``realm_of_agents.prompt.system_prompt``). The memory and goal progress of the moment
  are not archived, so they are not in it;
* ``user``: the event, as the turn rendered it (``prompt.event_message``);
* for every model step that asked for tools: an ``assistant`` message with its ``tool_calls``
  (``{"id", "type": "function", "function": {"name": "<server>__<tool>", "arguments": {...}}}``,
  the Hugging Face chat-template shape) and one ``tool`` message per call with its result text
  (``tool_call_id``), exactly as the turn fed them back;
* ``assistant``: the reply.

Only turns that ended ``replied`` with a reply from a real model are exported: declined and failed
turns are not examples of what the adapter should say, and a reply from the embedded ``offline``
provider is a canned echo, not model output. A reply the endpoint's base model gave because the
adapter was not served (a step's ``fallback``) is kept: it is real model output. With
``export.include_tool_calls: false`` turns that called tools are skipped (their reply leans on
results the line would not show). Every string goes through the adapter's redaction rules
(``kernel.ml.redaction``); identical conversations are written once. :class:`ExportReport` counts
what was read, written, skipped (by reason) and redacted (by rule).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernel.config.loader import ConfigSet
from kernel.config.models import AdapterConfig, AgentConfig
from kernel.ml.redaction import ExportRedactor
from kernel.ports import NotFound
from realm_of_agents import prompt
from realm_of_agents.archive import TurnArchive

__all__ = ["ExportError", "ExportReport", "agents_using", "export_turns", "turn_messages", "write_jsonl"]

OFFLINE_PROVIDERS = {"offline"}
#: Turns read per agent, at most (newest first).
MAX_TURNS = 100_000


class ExportError(Exception):
    """The export cannot run as asked (an unknown agent, say)."""


@dataclass
class ExportReport:
    adapter: str
    agents: list[str]
    read: int = 0
    written: int = 0
    duplicates: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    redactions: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"adapter": self.adapter, "agents": self.agents, "read": self.read, "written": self.written,
                "duplicates": self.duplicates, "skipped": dict(sorted(self.skipped.items())),
                "redactions": dict(sorted(self.redactions.items()))}

    def render(self) -> str:
        lines = [f"adapter {self.adapter}: {self.written} conversation(s) written from {self.read} archived turn(s) "
                 f"of {', '.join(self.agents) or 'no agent'}"]
        if self.duplicates:
            lines.append(f"  {self.duplicates} duplicate(s) left out")
        for reason, count in sorted(self.skipped.items()):
            lines.append(f"  skipped {count}: {reason}")
        if self.redactions:
            lines.append("  redacted: " + ", ".join(f"{rule} {count}" for rule, count in sorted(self.redactions.items())))
        return "\n".join(lines)


def agents_using(adapter: str, configs: ConfigSet) -> list[AgentConfig]:
    """Agents whose config names ``adapter`` (any version), by id."""
    return [agent for _, agent in sorted(configs.agents.items())
            if agent.model.adapter is not None and agent.model.adapter.name == adapter]


def _tool_text(result: Any) -> str:
    """A tool result as the turn fed it back to the model (``realm_of_agents.turn._tool_text``)."""
    if not isinstance(result, Mapping):
        return json.dumps(result, ensure_ascii=False)
    parts = [item.get("text") or json.dumps(item) for item in result.get("content", []) if isinstance(item, Mapping)]
    text = "\n".join(parts) if parts else json.dumps(result.get("structured_content"))
    return ("ERROR: " if result.get("is_error") else "") + text


class _Skip(Exception):
    pass


def turn_messages(record: Mapping[str, Any], agent: AgentConfig, redactor: ExportRedactor, *,
                  include_tool_calls: bool = True) -> list[dict[str, Any]]:
    """The conversation of one archived turn (see the module docstring); ``_Skip`` with the reason if none."""
    outcome = record.get("outcome")
    if outcome != "replied":
        raise _Skip(f"outcome '{outcome}' (only replied turns are examples)")
    reply = record.get("reply")
    if not isinstance(reply, str) or not reply.strip():
        raise _Skip("no reply text")
    steps = [s for s in record.get("steps") or [] if isinstance(s, Mapping)]
    model_steps = [s for s in steps if s.get("kind") == "model"]
    providers = {s.get("provider") for s in model_steps} | {record.get("provider")}
    if providers & OFFLINE_PROVIDERS or not model_steps:
        raise _Skip("answered by the offline provider (not model output)")
    event = record.get("event")
    if not isinstance(event, Mapping) or not event.get("type") or not event.get("source"):
        raise _Skip("malformed record (no event type or source)")

    safe_event = {**event, "data": redactor.data(event.get("data")),
                  "subject": redactor.text(str(event["subject"])) if event.get("subject") else None,
                  "source": redactor.text(str(event["source"]))}
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": redactor.text(prompt.system_prompt({"config": agent.model_dump(mode="json")}))},
        {"role": "user", "content": redactor.text(prompt.event_message(safe_event))},
    ]
    results = {s.get("call_id"): s for s in steps if s.get("kind") == "tool"}
    for step in model_steps:  # the last one, without tool calls, gave the reply
        calls = step.get("tool_calls") or []
        if not calls:
            continue
        if not include_tool_calls:
            raise _Skip("called tools (export.include_tool_calls is false)")
        messages.append({
            "role": "assistant",
            "content": redactor.text(str(step.get("content") or "")),
            "tool_calls": [{"id": call.get("id"), "type": "function",
                            "function": {"name": call.get("name"), "arguments": redactor.data(call.get("arguments") or {})}}
                           for call in calls],
        })
        for call in calls:
            done = results.get(call.get("id"))
            if done is None or "result" not in done:
                raise _Skip("a tool call without its result in the record")
            messages.append({"role": "tool", "tool_call_id": call.get("id"),
                             "content": redactor.text(_tool_text(done["result"]))})
    messages.append({"role": "assistant", "content": redactor.text(reply)})
    return messages


async def export_turns(adapter: AdapterConfig, configs: ConfigSet, archive: TurnArchive, *,
                       agents: Iterable[str] | None = None, max_turns: int = MAX_TURNS
                       ) -> tuple[list[dict[str, Any]], ExportReport]:
    """The training lines of the chosen agents' archived turns, oldest first, and what happened to each turn.

    ``agents``: these agent ids; default the adapter's ``export.agents``, else every agent whose
    config uses the adapter. ``max_turns``: the newest turns read per agent, at most (through the
    archive's index, newest first).
    """
    chosen = list(agents) if agents else (adapter.export.agents or [a.id for a in agents_using(adapter.name, configs)])
    unknown = [agent_id for agent_id in chosen if agent_id not in configs.agents]
    if unknown:
        raise ExportError(f"unknown agent(s) {', '.join(unknown)}: their configs are needed for the system prompt; "
                          f"known: {', '.join(sorted(configs.agents)) or 'none'}")
    report = ExportReport(adapter=adapter.name, agents=chosen)
    redactor = ExportRedactor(adapter.export.redaction)
    found: list[tuple[str, str, dict[str, Any]]] = []
    seen: set[str] = set()
    for agent_id in chosen:
        agent = configs.agents[agent_id]
        for record in await _records(archive, agent_id, max_turns, report):
            report.read += 1
            redactor.counts.clear()
            try:
                messages = turn_messages(record, agent, redactor, include_tool_calls=adapter.export.include_tool_calls)
            except _Skip as skip:
                report.skipped[str(skip)] += 1
                continue
            key = hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
            if key in seen:
                report.duplicates += 1
                continue
            seen.add(key)
            report.redactions.update(redactor.counts)  # what was removed from the lines written
            event = record.get("event") or {}
            found.append((str(record.get("finished") or ""), str(record.get("turn_id")), {
                "messages": messages,
                "metadata": {"agent_id": agent_id, "turn_id": record.get("turn_id"),
                             "event_type": event.get("type"), "finished": record.get("finished"),
                             "config_version": record.get("config_version")},
            }))
    found.sort(key=lambda item: (item[0], item[1]))
    lines = [line for _, _, line in found]
    report.written = len(lines)
    return lines, report


async def _records(archive: TurnArchive, agent_id: str, max_turns: int, report: ExportReport) -> list[dict[str, Any]]:
    """The agent's newest ``max_turns`` archived turn records (index rows, then each turn's blob)."""
    records = []
    for row in await archive.recent(agent_id, limit=max_turns):
        try:
            records.append(await archive.get(agent_id, str(row["turn_id"])))
        except (NotFound, ValueError):
            report.skipped["indexed but its record is missing or unreadable"] += 1
    return records


def write_jsonl(lines: Iterable[Mapping[str, Any]], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    temp.replace(path)
    return path
