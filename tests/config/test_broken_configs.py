"""Broken configs: each problem names the file, the line, the JSON path and what is wrong.

Every case also checks that the other, valid configs still load (one broken file never stops
the rest).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from kernel.config import ConfigSet

GOOD_AGENT = """\
id: helper
display_name: Helper
purpose: Help with finance questions.
"""


@dataclass
class Case:
    name: str
    file: str
    text: str
    path: str
    says: str
    line: int | None
    column: int | None = None


CASES = [
    Case("yaml syntax error", "agent_configs/bad.yaml", "id: x\n  display_name: [\n", "$", "invalid YAML", 2, 15),
    Case(
        "json syntax error",
        "agent_configs/bad.json",
        '{\n  "id": "x",\n  "display_name": "X"\n  "purpose": "p"\n}\n',
        "$",
        "invalid JSON: Expecting ',' delimiter",
        4,
        3,
    ),
    Case(
        "wrong type",
        "agent_configs/bad.yaml",
        "id: x\ndisplay_name: X\npurpose: p\nenabled: [yes]\n",
        "$.enabled",
        "wrong type",
        4,
        10,
    ),
    Case(
        "missing required field",
        "agent_configs/bad.yaml",
        "id: x\ndisplay_name: X\n",
        "$.purpose",
        "missing required field 'purpose'",
        1,
    ),
    Case(
        "unknown key with suggestion",
        "agent_configs/bad.yaml",
        "id: x\ndisplay_name: X\npurpose: p\nsubscriptons: []\n",
        "$.subscriptons",
        "unknown key 'subscriptons' (did you mean 'subscriptions'?)",
        4,
        1,
    ),
    Case(
        "unknown nested key",
        "agent_configs/bad.yaml",
        "id: x\ndisplay_name: X\npurpose: p\nmemory:\n  window: 3\n",
        "$.memory.window",
        "unknown key 'window' (did you mean 'window_turns'?)",
        5,
        3,
    ),
    Case(
        "duplicate id across files",
        "agent_configs/zz-dup.yaml",
        "id: helper\ndisplay_name: Again\npurpose: p\n",
        "$.id",
        "duplicate agent id 'helper': already defined in agent_configs/helper.yaml:1",
        1,
        5,
    ),
    Case(
        "dangling MCP server",
        "agent_configs/bad.yaml",
        "id: x\ndisplay_name: X\npurpose: p\ntools:\n  - server: filesystm\n",
        "$.tools[0].server",
        "unknown MCP server 'filesystm' (did you mean 'filesystem'?)",
        5,
        13,
    ),
    Case(
        "dangling adapter",
        "agent_configs/bad.yaml",
        "id: x\ndisplay_name: X\npurpose: p\nmodel:\n  adapter:\n    name: cfo-financ\n",
        "$.model.adapter.name",
        "unknown adapter 'cfo-financ' (did you mean 'cfo-finance'?)",
        6,
        11,
    ),
    Case(
        "tool outside the server's include list",
        "agent_configs/bad.yaml",
        "id: x\ndisplay_name: X\npurpose: p\ntools:\n  - server: github\n    tools: [delete_repo]\n",
        "$.tools[0].tools[0]",
        "unknown tool of MCP server 'github' 'delete_repo'",
        6,
        13,
    ),
    Case(
        "tool excluded by the server",
        "agent_configs/bad.yaml",
        "id: x\ndisplay_name: X\npurpose: p\ntools:\n  - server: filesystem\n    tools: [move_file]\n",
        "$.tools[0].tools[0]",
        "tool 'move_file' is excluded by MCP server 'filesystem'",
        6,
        13,
    ),
    Case(
        "approval for a server not granted",
        "agent_configs/bad.yaml",
        "id: x\ndisplay_name: X\npurpose: p\napprovals:\n  - server: memory\n",
        "$.approvals[0].server",
        "approval rule for MCP server 'memory', which this agent is not granted",
        5,
        13,
    ),
    Case(
        "bad cron (five fields)",
        "agent_configs/bad.yaml",
        "id: x\ndisplay_name: X\npurpose: p\nschedules:\n  - name: daily\n    cron: '0 9 * * *'\n",
        "$.schedules[0].cron",
        "did you mean '0 0 9 * * *'?",
        6,
        11,
    ),
    Case(
        "bad cron (out of range)",
        "agent_configs/bad.yaml",
        "id: x\ndisplay_name: X\npurpose: p\nschedules:\n  - name: daily\n    cron: '0 61 9 * * *'\n",
        "$.schedules[0].cron",
        "is not a valid NCRONTAB expression",
        6,
        11,
    ),
    Case(
        "bad secret reference name",
        "mcp_configs/bad.yaml",
        "id: x\ntransport: stdio\ncommand: node\nenv:\n  TOKEN: ${secret:my_token}\n",
        "$.env.TOKEN",
        "secret name 'my_token' is not a valid Key Vault secret name",
        5,
        10,
    ),
    Case(
        "unknown reference source",
        "mcp_configs/bad.yaml",
        "id: x\ntransport: stdio\ncommand: node\nenv:\n  TOKEN: ${vault:token}\n",
        "$.env.TOKEN",
        "unknown reference source 'vault'",
        5,
        10,
    ),
    Case(
        "unterminated reference",
        "mcp_configs/bad.yaml",
        "id: x\ntransport: streamable_http\nurl: https://example.test/mcp\nheaders:\n  Authorization: Bearer ${secret:tok\n",
        '$.headers.Authorization',
        "unterminated reference",
        5,
        18,
    ),
    Case(
        "reference where nothing resolves it",
        "agent_configs/bad.yaml",
        "id: x\ndisplay_name: X\npurpose: ${secret:purpose}\n",
        "$.purpose",
        "references are resolved nowhere in agent documents",
        3,
        10,
    ),
    Case(
        "reference outside the fields that resolve them",
        "mcp_configs/bad.yaml",
        "id: x\ntransport: stdio\ncommand: node\ndescription: uses ${env:HOME}\n",
        "$.description",
        "resolved in mcp server documents only in: args, command, cwd, env, headers, url",
        4,
        14,
    ),
    Case("empty file", "agent_configs/bad.yaml", "\n  \n", "$", "file is empty", 1),
    Case("list instead of object", "agent_configs/bad.yaml", "- id: x\n- id: y\n", "$", "one object at the top level", 1, 1),
    Case(
        "duplicate key in YAML",
        "agent_configs/bad.yaml",
        "id: x\ndisplay_name: X\npurpose: p\nid: y\n",
        "$",
        "duplicate key 'id'",
        4,
        1,
    ),
    Case(
        "invalid id format",
        "agent_configs/bad.yaml",
        "id: Chief_Officer\ndisplay_name: X\npurpose: p\n",
        "$.id",
        "invalid format",
        1,
        5,
    ),
    Case(
        "stdio server without command",
        "mcp_configs/bad.yaml",
        "id: x\ntransport: stdio\nargs: [a]\n",
        "$",
        "transport 'stdio' needs 'command'",
        1,
        1,
    ),
    Case(
        "http server given stdio fields",
        "mcp_configs/bad.yaml",
        "id: x\ntransport: streamable_http\nurl: https://example.test/mcp\ncommand: node\n",
        "$",
        "transport 'streamable_http' does not use 'command'",
        1,
        1,
    ),
    Case(
        "unknown transport",
        "mcp_configs/bad.yaml",
        "id: x\ntransport: websocket\ncommand: node\n",
        "$.transport",
        "not one of the allowed values (expected one of 'stdio' or 'streamable_http'",
        2,
        12,
    ),
    Case(
        "unknown kind",
        "agent_configs/bad.yaml",
        "kind: adaptor\nname: x\n",
        "$.kind",
        "unknown kind (did you mean 'adapter'?)",
        1,
        7,
    ),
    Case(
        "adapter missing training data",
        "agent_configs/bad.yaml",
        "kind: adapter\nname: x\nversion: '1'\nbase_model: m\n",
        "$.training_data",
        "missing required field 'training_data'",
        1,
    ),
    Case(
        "number where a string is expected (YAML)",
        "agent_configs/bad.yaml",
        "kind: adapter\nname: x\nversion: 1.0\nbase_model: m\ntraining_data: {uri: d.jsonl}\n",
        "$.version",
        "wrong type (in YAML, quote it to make it a string)",
        3,
        10,
    ),
    Case(
        "schedule sends a wildcard event type",
        "agent_configs/bad.yaml",
        "id: x\ndisplay_name: X\npurpose: p\nschedules:\n  - name: s\n    cron: '0 0 * * * *'\n    event_type: 'tick.*'\n",
        "$.schedules[0].event_type",
        "cannot contain '*'",
        7,
        17,
    ),
    Case(
        "duplicate goal ids inside one agent",
        "agent_configs/bad.yaml",
        "id: x\ndisplay_name: X\npurpose: p\ngoals:\n  - {id: g, description: a}\n  - {id: g, description: b}\n",
        "$",
        "'g' appears twice in goals",
        1,
        1,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_broken_config_is_reported_precisely(case: Case, load_with) -> None:
    configs: ConfigSet = load_with({"agent_configs/helper.yaml": GOOD_AGENT, case.file: case.text})

    matching = [p for p in configs.errors if p.file == case.file and case.says in p.render()]
    assert matching, f"no error saying {case.says!r} in:\n" + "\n".join(p.render() for p in configs.problems)
    problem = matching[0]
    assert problem.path == case.path
    assert problem.line == case.line
    if case.column is not None:
        assert problem.column == case.column
    assert case.file in problem.render()
    # The broken file never takes the good ones down.
    assert "helper" in configs.agents
    assert {"filesystem", "memory", "everything", "github"} <= set(configs.mcp_servers)


def test_there_are_at_least_twenty_distinct_cases() -> None:
    assert len({case.name for case in CASES}) >= 20


def test_all_problems_of_a_file_are_reported_at_once(load_with) -> None:
    configs = load_with(
        {"agent_configs/bad.yaml": "id: x\ndisplay_name: 3\npurpos: p\nmemory: {window_turns: 0}\n"}
    )
    paths = {p.path for p in configs.errors}
    assert {"$.display_name", "$.purpos", "$.purpose", "$.memory.window_turns"} <= paths


def test_unknown_key_lists_what_is_allowed(load_with) -> None:
    configs = load_with({"agent_configs/bad.yaml": "id: x\ndisplay_name: X\npurpose: p\ncolour: red\n"})
    (problem,) = configs.errors
    assert problem.expected is not None and "subscriptions" in problem.expected
    assert problem.found == "'colour'"


def test_disabled_server_grant_is_a_warning_not_an_error(load_with) -> None:
    configs = load_with(
        {"agent_configs/dev.yaml": "id: dev\ndisplay_name: Dev\npurpose: p\ntools:\n  - server: github\n"}
    )
    assert configs.ok
    (warning,) = configs.problems
    assert warning.severity == "warning" and "disabled" in warning.message
    assert "dev" in configs.agents


def test_wrong_value_under_env_shows_its_type_only(load_with) -> None:
    configs = load_with(
        {"mcp_configs/bad.yaml": "id: x\ntransport: stdio\ncommand: node\nenv:\n  TOKEN: [hunter2-secret]\n"}
    )
    (problem,) = [p for p in configs.errors if p.file == "mcp_configs/bad.yaml"]
    assert problem.path == "$.env.TOKEN"
    assert "hunter2" not in problem.render()
    assert problem.found == "a list"


def test_kind_is_required_outside_the_config_folders(load_with) -> None:
    configs = load_with({"elsewhere/agent.yaml": "id: x\ndisplay_name: X\npurpose: p\n"})
    from kernel.config import load_configs

    configs = load_configs(["elsewhere"])
    (problem,) = configs.errors
    assert "add 'kind'" in problem.message
