"""Workflow documents: the template language, conditions, and the loader's precise problems."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from kernel.config import load_configs
from kernel.config.schemas import load
from kernel.workflows import conditions, graph, templates
from kernel.workflows.templates import MISSING, TemplateError

REPO = Path(__file__).resolve().parents[2]
CONFIGS = Path(__file__).resolve().parent / "configs"
SCOPE = {"input": {"quarter": "Q3-2026", "n": 3, "flags": [True, False]},
         "steps": {"cfo": {"status": "completed", "output": {"text": "fine", "items": [{"v": 1}, {"v": 2}]}},
                   "cto": {"status": "skipped", "output": None}},
         "run": {"id": "wf-x-1"}}


# -- templates -----------------------------------------------------------------------------------

def test_a_whole_value_template_keeps_the_json_type_and_text_templates_format() -> None:
    assert templates.render("{{ input.n }}", SCOPE) == 3
    assert templates.render("{{input.flags}}", SCOPE) == [True, False]
    assert templates.render("{{ steps.cfo.output.items[1].v }}", SCOPE) == 2
    assert templates.render("n={{ input.n }}, q={{ input.quarter }}", SCOPE) == "n=3, q=Q3-2026"
    assert templates.render({"a": ["{{ run.id }}", 1, None]}, SCOPE) == {"a": ["wf-x-1", 1, None]}
    assert templates.render("{{ steps.cfo.output.items[0] }} x", SCOPE) == '{"v": 1} x'


def test_a_missing_path_is_an_error_naming_what_is_there_or_null_when_lenient() -> None:
    with pytest.raises(TemplateError, match=r"steps.cfo.output has no 'txt' \(it has items, text\)"):
        templates.render("{{ steps.cfo.output.txt }}", SCOPE)
    with pytest.raises(TemplateError, match="has 2 item"):
        templates.render("{{ steps.cfo.output.items[5] }}", SCOPE)
    assert templates.render({"x": "{{ steps.cto.output.text }}"}, SCOPE, lenient=True) == {"x": None}


@pytest.mark.parametrize("text, message", [
    ("{{ input.quarter", "never closed"),
    ("{{ }}", "empty template"),
    ("{{ input.n + 1 }}", "templates hold no expressions"),
    ("{{ env.HOME }}", "starts at 'env'"),
    ("{{ input..x }}", "expected a name after '.'"),
    ("{{ __import__('os') }}", "no expressions"),
    ("x }} y", "closes no"),
])
def test_anything_but_a_dotted_path_is_refused(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("(", r"\(").replace("+", r"\+")):
        templates.references(text)


def test_conditions_are_operators_over_values_and_missing_equals_nothing() -> None:
    holds = conditions.holds
    assert holds({"equals": ["{{ steps.cfo.output.text }}", "fine"]}, SCOPE)
    assert not holds({"equals": ["{{ input.flags[0] }}", 1]}, SCOPE)  # true is not 1
    assert holds({"in": ["{{ input.quarter }}", ["Q2-2026", "Q3-2026"]]}, SCOPE)
    assert holds({"greater_than": ["{{ input.n }}", 2]}, SCOPE) and not holds({"less_than": ["{{ input.n }}", "4"]}, SCOPE)
    assert holds({"exists": "steps.cfo.output.items"}, SCOPE) and not holds({"exists": "steps.cto.output.text"}, SCOPE)
    assert not holds({"equals": ["{{ steps.cto.output.text }}", None]}, SCOPE)  # missing, not null
    assert holds({"not_equals": ["{{ steps.nope.status }}", "completed"]}, SCOPE)
    assert holds({"all": [{"equals": ["{{ steps.cto.status }}", "skipped"]},
                          {"not": {"exists": "input.absent"}}]}, SCOPE)
    assert holds({"any": [{"equals": [1, 2]}, {"equals": ["{{ run.id }}", "wf-x-1"]}]}, SCOPE)
    assert templates.operand("{{ input.none }}", SCOPE) is MISSING


def test_the_dag_order_and_cycles_are_named() -> None:
    needs = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    assert graph.order(needs) == ["a", "b", "c", "d"]
    assert graph.depths(needs) == {"a": 0, "b": 1, "c": 1, "d": 2}
    assert graph.upstream(needs, "d") == {"a", "b", "c"}
    assert graph.find_cycle({"a": ["c"], "b": ["a"], "c": ["b"]}) == ["a", "c", "b", "a"]


# -- documents -----------------------------------------------------------------------------------

def _load(tmp_path: Path, document: dict, *, name: str = "flow.yaml") -> list:
    folder = tmp_path / "workflow_configs"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(yaml.safe_dump(document, sort_keys=False))
    configs = load_configs([CONFIGS / "analyst.yaml", CONFIGS / "reviewer.yaml", REPO / "mcp_configs", folder])
    return configs


def _agent(step_id: str, **extra: object) -> dict:
    return {"id": step_id, "agent": "analyst", "event": "analysis.x", **extra}


def test_a_cycle_is_reported_with_its_steps_in_order_and_its_position(tmp_path: Path) -> None:
    configs = _load(tmp_path, {"id": "loop", "steps": [_agent("a", needs=["c"]), _agent("b", needs=["a"]),
                                                        _agent("c", needs=["b"])]})
    (problem,) = configs.errors
    assert problem.code == "cycle" and "a -> c -> b -> a" in problem.message
    assert problem.path == "$.steps[0].needs" and problem.line == 7 and problem.file.endswith("flow.yaml")
    assert "loop" not in configs.workflows


def test_unknown_agents_tools_and_steps_get_did_you_mean_with_line_and_column(tmp_path: Path) -> None:
    configs = _load(tmp_path, {"id": "typos", "tools": [{"server": "everything", "tools": ["echo"]}], "steps": [
        _agent("first", agent="analist"),
        {"id": "call", "tool": "everythin.echo", "arguments": {}, "needs": ["frist"]},
        {"id": "sum", "tool": "everything.get-sum", "arguments": {"a": 1, "b": 2}},
    ]})
    problems = {p.path: p for p in configs.errors}
    agent = problems["$.steps[0].agent"]
    assert agent.message == "unknown agent 'analist' (did you mean 'analyst'?)" and agent.found == "'analist'"
    assert (agent.line, agent.column) == (8, 10)  # "  agent: analist" in the dumped YAML
    assert problems["$.steps[1].needs[0]"].message == "unknown step 'frist' (did you mean 'first'?)"
    assert problems["$.steps[1].tool"].message == "unknown MCP server 'everythin' (did you mean 'everything'?)"
    granted = problems["$.steps[2].tool"]
    assert granted.code == "not-granted" and "add {server: everything, tools: [get-sum]} under tools" in granted.message
    assert "typos" not in configs.workflows


def test_templates_are_checked_for_syntax_roots_and_upstream_steps(tmp_path: Path) -> None:
    configs = _load(tmp_path, {"id": "tpl", "inputs": {"type": "object", "properties": {"quarter": {"type": "string"}},
                                                       "additionalProperties": False}, "steps": [
        _agent("a", data={"q": "{{ input.quater }}", "bad": "{{ input.quarter | upper }}"}),
        _agent("b", data={"later": "{{ steps.c.output.text }}", "self": "{{ steps.b.output }}"}),
        _agent("c", needs=["a"], data={"ok": "{{ steps.a.output.text }}", "field": "{{ steps.a.outputs }}",
                                       "result": "{{ result.text }}"},
               when={"any": [{"exists": "steps.zz.output"}]}),
    ], "output": {"x": "{{ steps.c.output.text }}", "y": "{{ run.nope }}"}})
    by_path = {p.path: p for p in configs.errors}
    assert "the input schema has no property 'quater' (did you mean 'quarter'?)" in by_path["$.steps[0].data.q"].message
    assert "only names, '.' and [index]" in by_path["$.steps[0].data.bad"].message
    assert by_path["$.steps[1].data.later"].code == "not-upstream"
    assert "reads step 'c', which does not run before this one" in by_path["$.steps[1].data.later"].message
    assert by_path["$.steps[1].data.self"].code == "not-upstream"
    assert "a step has no 'outputs'" in by_path["$.steps[2].data.field"].message
    assert "'result' exists only in a step's outputs" in by_path["$.steps[2].data.result"].message
    assert by_path["$.steps[2].when.any[0].exists"].message.startswith("unknown step 'zz'")
    assert "run has no 'nope'" in by_path["$.output.y"].message
    assert "$.steps[2].data.ok" not in by_path and "$.output.x" not in by_path
    assert all(p.line is not None for p in configs.errors)


def test_the_model_refuses_ambiguous_steps_with_positions(tmp_path: Path) -> None:
    configs = _load(tmp_path, {"id": "shape", "steps": [
        {"id": "both", "agent": "analyst", "event": "analysis.x", "tool": "everything.echo"},
        {"id": "none"},
        {"id": "w", "wait": {"event": "x"}, "retry": {"max_attempts": 2}},
        {"id": "c", "agent": "analyst", "event": "analysis.x", "when": {"equals": [1, 1], "exists": "input.x"}}]})
    messages = {(p.path, p.message) for p in configs.errors}
    assert ("$.steps[0]", "a step has exactly one of agent, tool, approval, wait; found agent, tool") in messages
    assert ("$.steps[1]", "a step has exactly one of agent, tool, approval, wait") in messages
    assert ("$.steps[2]", "a wait step is not retried: remove retry") in messages
    assert any(path == "$.steps[3].when" and "exactly one operator" in message for path, message in messages)


def test_the_sample_workflow_loads_clean_and_matches_its_schema() -> None:
    configs = load_configs([REPO / "agent_configs", REPO / "mcp_configs", REPO / "workflow_configs"])
    assert [p.render() for p in configs.problems if "workflow_configs" in p.file] == []
    review = configs.workflows["quarterly-review"]
    assert [s.id for s in review.steps][:4] == ["finance", "technology", "operations", "decision"]
    raw = yaml.safe_load((REPO / "workflow_configs" / "quarterly-review.yaml").read_text())
    assert raw["$schema"] == "../schemas/workflow.schema.json"
    jsonschema.Draft202012Validator(load(REPO / "schemas", "workflow")).validate(raw)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(load(REPO / "schemas", "workflow")).validate({**raw, "stepz": []})
    assert json.loads(json.dumps(review.model_dump(mode="json", by_alias=True)))["steps"][5]["when"]["equals"]
