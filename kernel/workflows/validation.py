"""Cross-reference checks of a workflow document, as precise as the agent configs' problems.

Run by the config loader after every document has loaded on its own: the DAG (unknown needs,
cycles named step by step), the agents and MCP tools the steps address (known, granted, reachable
from the workflow's namespace), the input schema, and every template (syntax; paths that start
at a known root; ``steps.X`` only for steps upstream of the one that reads it). Each problem
carries the file, line and column, the JSON path, what was expected and what was found, and a
"did you mean" where a near name exists.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from kernel import namespaces as ns
from kernel.config.parsing import JsonPath, Parsed, format_path
from kernel.config.problems import Problem
from kernel.workflows import graph, ids, reach
from kernel.workflows.models import Step, WorkflowConfig
from kernel.workflows.templates import TemplateError, parse_path, references, walk

if TYPE_CHECKING:
    from kernel.config.loader import ConfigSet

#: What ``steps.<id>.`` and ``run.`` offer in templates.
STEP_FIELDS = ("status", "output", "error", "attempts", "started", "finished")
RUN_FIELDS = ("id", "workflow", "started")


def resolve(workflow: WorkflowConfig, reference: str) -> str:
    """The address an agent or MCP server reference in ``workflow`` names (``ids.reference``)."""
    return ids.reference(workflow.namespace, reference)


def workflow_problems(workflow: WorkflowConfig, parsed: Parsed, file: str, configs: ConfigSet) -> list[Problem]:
    """Every problem of one workflow against the other loaded documents."""
    check = _Checker(workflow, parsed, file, configs)
    return list(check.run())


class _Checker:
    def __init__(self, workflow: WorkflowConfig, parsed: Parsed, file: str, configs: ConfigSet) -> None:
        self.workflow = workflow
        self.parsed = parsed
        self.file = file
        self.configs = configs
        self.needs = {step.id: list(step.needs) for step in workflow.steps}

    def at(self, path: JsonPath, message: str, **extra: Any) -> Problem:
        position = self.parsed.position(path)
        return Problem(file=self.file, path=format_path(path), line=position.line if position else None,
                       column=position.column if position else None, message=message, **extra)

    def dangling(self, path: JsonPath, what: str, name: str, known: Iterable[str]) -> Problem:
        names = sorted(set(known))
        hint = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        return self.at(path, f"unknown {what} '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint else ""),
                       expected=f"one of: {', '.join(names)}" if names else f"a declared {what}",
                       found=f"'{name}'", code="dangling-reference")

    def run(self) -> Iterator[Problem]:
        yield from self.input_schema()
        yield from self.grants()
        yield from self.dag()
        for index, step in enumerate(self.workflow.steps):
            where: JsonPath = ("steps", index)
            if step.agent is not None:
                yield from self.agent(step.agent, where + ("agent",))
            if step.tool is not None:
                yield from self.tool(step.tool, where + ("tool",))
            if step.compensate is not None and step.compensate.agent is not None:
                yield from self.agent(step.compensate.agent, where + ("compensate", "agent"))
            if step.compensate is not None and step.compensate.tool is not None:
                yield from self.tool(step.compensate.tool, where + ("compensate", "tool"))
            yield from self.step_templates(index, step)
        raw = self.parsed.data if isinstance(self.parsed.data, dict) else {}
        if "output" in raw:
            yield from self.templates(raw["output"], ("output",), visible=set(self.needs), result=False)

    # -- inputs and grants ---------------------------------------------------------------------
    def input_schema(self) -> Iterator[Problem]:
        import jsonschema  # on first use: importing it with the app costs every cold start ~0.1 s

        try:
            jsonschema.Draft202012Validator.check_schema(self.workflow.inputs)
        except jsonschema.SchemaError as error:
            yield self.at(("inputs", *error.absolute_path), f"not a valid JSON Schema: {error.message}",
                          expected="a JSON Schema (draft 2020-12) of the run's input", code="invalid-schema")

    def grants(self) -> Iterator[Problem]:
        for index, grant in enumerate(self.workflow.tools):
            address = resolve(self.workflow, grant.server)
            server = self.configs.mcp_servers.get(address)
            if server is None:
                yield self.dangling(("tools", index, "server"), "MCP server", grant.server, self._servers())
                continue
            for tool_index, tool in enumerate(grant.tools or []):
                problem = self._tool_problem(address, tool)
                if problem:
                    yield self.at(("tools", index, "tools", tool_index), problem, code="excluded-tool")

    # -- the DAG ---------------------------------------------------------------------------------
    def dag(self) -> Iterator[Problem]:
        for index, step in enumerate(self.workflow.steps):
            for need_index, need in enumerate(step.needs):
                if need not in self.needs:
                    yield self.dangling(("steps", index, "needs", need_index), "step", need, self.needs)
        cycle = graph.find_cycle(self.needs)
        if cycle:
            index = next(i for i, step in enumerate(self.workflow.steps) if step.id == cycle[0])
            yield self.at(("steps", index, "needs"), f"the steps form a cycle: {' -> '.join(cycle)} (each needs the "
                          "next); a workflow is a DAG", code="cycle")

    # -- agents and tools ------------------------------------------------------------------------
    def agent(self, reference: str, path: JsonPath) -> Iterator[Problem]:
        address = resolve(self.workflow, reference)
        agent = self.configs.agents.get(address)
        if agent is None:
            known = [ns.split(a)[1] if ns.namespace_of(a) == self.workflow.namespace else a for a in self.configs.agents]
            yield self.dangling(path, "agent", reference, known)
            return
        crossing = reach.refusal(self.configs.namespaces, self.workflow.namespace, "agents", address)
        if crossing is not None:
            yield self.at(path, f"cross-namespace reference: {crossing}", code="cross-namespace")
        if not agent.enabled:
            yield self.at(path, f"agent '{reference}' is disabled: its events queue until it is enabled, so this step "
                          "waits (and may time out)", severity="warning", code="disabled-agent")

    def tool(self, reference: str, path: JsonPath) -> Iterator[Problem]:
        server_ref, tool = reach.split_tool(reference, [grant.server for grant in self.workflow.tools])
        address = resolve(self.workflow, server_ref)
        if address not in self.configs.mcp_servers:
            yield self.dangling(path, "MCP server", server_ref, self._servers())
            return
        problem = self._tool_problem(address, tool)
        if problem:
            yield self.at(path, problem, code="excluded-tool")
            return
        grant = next((g for g in self.workflow.tools if resolve(self.workflow, g.server) == address), None)
        if grant is None or (grant.tools is not None and tool not in grant.tools):
            granted = ", ".join(g.server if g.tools is None else f"{g.server} ({', '.join(g.tools)})"
                                for g in self.workflow.tools) or "nothing"
            yield self.at(path, f"the workflow is not granted tool '{tool}' of MCP server '{server_ref}': add "
                          f"{{server: {server_ref}, tools: [{tool}]}} under tools",
                          expected=f"a granted tool (granted: {granted})", found=f"'{reference}'", code="not-granted")
            return
        target, bare = ns.split(address)
        if not ns.routed(self.configs.namespaces, self.workflow.namespace, target, "tools", f"{bare}.{tool}"):
            yield self.at(path, "cross-namespace reference: " + ns.route_refusal(
                self.workflow.namespace, target, "tools", f"{bare}.{tool}"), code="cross-namespace")

    def _tool_problem(self, address: str, tool: str) -> str | None:
        server = self.configs.mcp_servers[address]
        if tool in server.tools.exclude:
            return f"tool '{tool}' is excluded by MCP server '{server.id}'"
        if server.tools.include is not None and tool not in server.tools.include:
            hint = difflib.get_close_matches(tool, server.tools.include, n=1, cutoff=0.6)
            return (f"unknown tool '{tool}' of MCP server '{server.id}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                    + f": it offers only {', '.join(server.tools.include)}")
        return None

    def _servers(self) -> list[str]:
        return [ns.split(a)[1] if ns.namespace_of(a) == self.workflow.namespace else a for a in self.configs.mcp_servers]

    # -- templates -------------------------------------------------------------------------------
    def step_templates(self, index: int, step: Step) -> Iterator[Problem]:
        raw = self.parsed.data["steps"][index] if _indexable(self.parsed.data, index) else {}
        where: JsonPath = ("steps", index)
        before = graph.upstream(self.needs, step.id)
        for key in ("data", "arguments"):
            if key in raw:
                yield from self.templates(raw[key], where + (key,), visible=before, result=False)
        if isinstance(raw.get("approval"), dict) and "prompt" in raw["approval"]:
            yield from self.templates(raw["approval"]["prompt"], where + ("approval", "prompt"), visible=before,
                                      result=False)
        if "outputs" in raw:
            yield from self.templates(raw["outputs"], where + ("outputs",), visible=before | {step.id}, result=True)
        if "when" in raw:
            yield from self.condition(raw["when"], where + ("when",), visible=before)
        compensate = raw.get("compensate")
        if isinstance(compensate, dict):
            for key in ("data", "arguments"):
                if key in compensate:
                    yield from self.templates(compensate[key], where + ("compensate", key),
                                              visible=before | {step.id}, result=False)

    def condition(self, value: Any, path: JsonPath, *, visible: set[str]) -> Iterator[Problem]:
        if not isinstance(value, dict):
            return
        for operator, argument in value.items():
            if operator in ("all", "any") and isinstance(argument, list):
                for index, item in enumerate(argument):
                    yield from self.condition(item, path + (operator, index), visible=visible)
            elif operator == "not":
                yield from self.condition(argument, path + ("not",), visible=visible)
            elif operator == "exists" and isinstance(argument, str):
                try:
                    parsed_path = parse_path(argument)
                except TemplateError as error:
                    yield self.at(path + ("exists",), f"bad path: {error}", code="bad-template")
                    continue
                yield from self.path_problems(parsed_path, argument, path + ("exists",), visible, result=False)
            else:
                yield from self.templates(argument, path + (operator,), visible=visible, result=False)

    def templates(self, value: Any, path: JsonPath, *, visible: set[str], result: bool) -> Iterator[Problem]:
        for inner, text in walk(value):
            try:
                found = references(text)
            except TemplateError as error:
                yield self.at(path + inner, f"bad template: {error}", found=_quote(text), code="bad-template")
                continue
            for reference in found:
                yield from self.path_problems(reference.path, reference.text, path + inner, visible, result=result)

    def path_problems(self, path: tuple[str | int, ...], text: str, where: JsonPath, visible: set[str], *,
                      result: bool) -> Iterator[Problem]:
        root = path[0]
        shown = f"'{{{{ {text} }}}}'"
        if root == "result" and not result:
            yield self.at(where, f"{shown}: 'result' exists only in a step's outputs", code="bad-template")
        elif root == "run" and len(path) > 1 and path[1] not in RUN_FIELDS:
            yield self.at(where, f"{shown}: run has no '{path[1]}'", expected=f"one of {', '.join(RUN_FIELDS)}",
                          code="bad-template")
        elif root == "steps" and len(path) > 1:
            step = str(path[1])
            if step not in self.needs:
                yield self.dangling(where, "step", step, self.needs)
            elif step not in visible:
                yield self.at(where, f"{shown} reads step '{step}', which does not run before this one: add it (or a "
                              "step after it) to needs", expected=f"a step upstream of this one: "
                              f"{', '.join(sorted(visible)) or 'none'}", code="not-upstream")
            elif len(path) > 2 and path[2] not in STEP_FIELDS:
                yield self.at(where, f"{shown}: a step has no '{path[2]}'", expected=f"one of {', '.join(STEP_FIELDS)}",
                              code="bad-template")
        elif root == "input" and len(path) > 1:
            properties = self.workflow.inputs.get("properties")
            if isinstance(properties, Mapping) and path[1] not in properties:
                closed = self.workflow.inputs.get("additionalProperties") is False
                hint = difflib.get_close_matches(str(path[1]), list(properties), n=1, cutoff=0.6)
                yield self.at(where, f"{shown}: the input schema has no property '{path[1]}'"
                              + (f" (did you mean '{hint[0]}'?)" if hint else ""),
                              expected=f"one of {', '.join(properties) or 'none'}",
                              severity="error" if closed else "warning", code="unknown-input")


def _indexable(data: Any, index: int) -> bool:
    return isinstance(data, dict) and isinstance(data.get("steps"), list) and index < len(data["steps"]) \
        and isinstance(data["steps"][index], dict)


def _quote(text: str) -> str:
    return f"'{text}'" if len(text) <= 80 else f"'{text[:77]}...'"
