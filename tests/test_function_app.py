"""function_app.py composes the blueprints that AOS_APP_ROLES selects, as the worker indexes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import pytest

from kernel.roles import ROLE_BLUEPRINTS, selected_roles

REPO = Path(__file__).resolve().parents[1]

#: Functions every app serves whatever its roles, registered once (kernel/health/blueprint.py).
COMMON_FUNCTIONS = {
    "health": ("httpTrigger", "health"),
    "health_live": ("httpTrigger", "health/live"),
    "health_ready": ("httpTrigger", "health/ready"),
    "health_details": ("httpTrigger", "health/details"),
}
#: Routes probes call without a key or token.
ANONYMOUS = {"health", "health_live", "health_ready"}

#: Functions each role must contribute (name -> trigger type and route where relevant).
ROLE_FUNCTIONS = {
    "kernel": {
        **COMMON_FUNCTIONS,
        "config_problems": ("httpTrigger", "configs/problems"),
        "route_agent_outputs": ("serviceBusTrigger", None),
        "deliver_tool_responses": ("serviceBusTrigger", None),
        "audit_records": ("httpTrigger", "audit"),
        "audit_verify": ("httpTrigger", "audit/verify"),
        "audit_anchor_now": ("httpTrigger", "audit/anchor"),
        "audit_anchor": ("timerTrigger", None),
        "model_usage": ("httpTrigger", "usage"),
        **{name: ("orchestrationTrigger", None) for name in ("workflow_run", "workflow_schedule")},
        **{name: ("activityTrigger", None) for name in (
            "workflow_send_agent", "workflow_send_tool", "workflow_index", "workflow_schedule_fire")},
        "workflow_triggers": ("serviceBusTrigger", None),
        "workflow_schedule_sync": ("timerTrigger", None),
        "list_workflows": ("httpTrigger", "workflows"),
        "sync_workflows": ("httpTrigger", "workflows/sync"),
        "start_workflow_run": ("httpTrigger", "workflows/{workflow_id}/start"),
        "list_workflow_runs": ("httpTrigger", "workflows/runs"),
        "get_workflow_run": ("httpTrigger", "workflows/runs/{run_id}"),
        "cancel_workflow_run": ("httpTrigger", "workflows/runs/{run_id}/cancel"),
        "answer_workflow_approval": ("httpTrigger", "workflows/runs/{run_id}/steps/{step_id}/approval"),
        "raise_workflow_event": ("httpTrigger", "workflows/runs/{run_id}/events/{name}"),
    },
    "realm": {
        **COMMON_FUNCTIONS,
        "agent": ("entityTrigger", None),
        **{name: ("orchestrationTrigger", None) for name in ("agent_turn", "agent_command", "agent_schedule")},
        **{name: ("activityTrigger", None) for name in (
            "agent_assess", "agent_model", "agent_tool", "agent_archive", "agent_publish", "agent_conclude", "agent_report",
            "agent_config", "agent_send_event", "agent_grant", "agent_summarize", "agent_tool_request",
            "agent_approval_requested", "agent_approval_decided", "agent_policy", "agent_policy_record")},
        "agent_wake": ("serviceBusTrigger", None),
        "agent_config_sync": ("timerTrigger", None),
        "agent_history_retention": ("timerTrigger", None),
        "list_agents": ("httpTrigger", "agents"),
        "sync_agents": ("httpTrigger", "agents/sync"),
        "get_agent": ("httpTrigger", "agents/{agent_id}"),
        "send_agent_event": ("httpTrigger", "agents/{agent_id}/events"),
        "pause_agent": ("httpTrigger", "agents/{agent_id}/pause"),
        "resume_agent": ("httpTrigger", "agents/{agent_id}/resume"),
        "retire_agent": ("httpTrigger", "agents/{agent_id}/retire"),
        "remember_fact": ("httpTrigger", "agents/{agent_id}/facts"),
        "update_goal": ("httpTrigger", "agents/{agent_id}/goals/{goal_id}"),
        "search_memory": ("httpTrigger", "agents/{agent_id}/memory"),
        "recent_turns": ("httpTrigger", "agents/{agent_id}/turns"),
        "get_turn": ("httpTrigger", "agents/{agent_id}/turns/{turn_id}"),
        "list_deadletters": ("httpTrigger", "deadletters"),
        "get_deadletter": ("httpTrigger", "deadletters/{record_id}"),
        "list_approvals": ("httpTrigger", "approvals"),
        "get_approval": ("httpTrigger", "approvals/{approval_id}"),
        "answer_approval": ("httpTrigger", "approvals/{approval_id}"),
    },
    "mcp": {
        **COMMON_FUNCTIONS,
        "mcp_gateway": ("serviceBusTrigger", None),
        "tool_call_retention": ("timerTrigger", None),
        "list_servers": ("httpTrigger", "mcp/servers"),
        "list_server_tools": ("httpTrigger", "mcp/servers/{server_id}/tools"),
        "call_server_tool": ("httpTrigger", "mcp/servers/{server_id}/tools/{tool}/call"),
        "ask_agent": ("mcpToolTrigger", None),
        "send_event": ("mcpToolTrigger", None),
        "search_agent_memory": ("mcpToolTrigger", None),
    },
}

INDEX_SCRIPT = """
import json, function_app
out = {}
for f in function_app.app.get_functions():
    out[f.get_function_name()] = [json.loads(b) for b in f.get_raw_bindings()]
print(json.dumps(out))
"""


def _index(roles_setting: str | None) -> dict[str, list[dict]]:
    env = {k: v for k, v in os.environ.items() if k != "AOS_APP_ROLES"}
    if roles_setting is not None:
        env["AOS_APP_ROLES"] = roles_setting
    result = subprocess.run(
        [sys.executable, "-c", INDEX_SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


ALL_ROLES = list(ROLE_BLUEPRINTS)
COMBINATIONS = [",".join(c) for n in range(1, 4) for c in combinations(ALL_ROLES, n)]


@pytest.mark.parametrize("roles_setting", [None, *COMBINATIONS])
def test_app_indexes_exactly_the_selected_roles(roles_setting: str | None) -> None:
    functions = _index(roles_setting)
    roles = ALL_ROLES if roles_setting is None else roles_setting.split(",")
    expected = {name for role in roles for name in ROLE_FUNCTIONS[role]}
    assert set(functions) == expected
    for role in roles:
        for name, (trigger, route) in ROLE_FUNCTIONS[role].items():
            (binding,) = [b for b in functions[name] if b["direction"] == "IN" and b["type"] != "durableClient"]
            assert binding["type"] == trigger
            if route is not None:
                assert binding["route"] == route


def test_health_is_anonymous_and_admin_routes_need_a_key() -> None:
    functions = _index(None)
    auth = {name: next(b for b in bindings if b["type"] == "httpTrigger")["authLevel"]
            for name, bindings in functions.items() if any(b["type"] == "httpTrigger" for b in bindings)}
    assert {name: auth.pop(name) for name in ANONYMOUS} == dict.fromkeys(ANONYMOUS, "ANONYMOUS")
    assert set(auth.values()) == {"FUNCTION"}, "every other route needs at least a function key"


def test_unknown_role_is_refused_with_the_valid_ones_named() -> None:
    with pytest.raises(ValueError, match="unknown role.*orchestrator.*kernel, realm, mcp"):
        selected_roles({"AOS_APP_ROLES": "kernel,orchestrator"})


def test_roles_are_case_and_space_tolerant() -> None:
    assert selected_roles({"AOS_APP_ROLES": " MCP , kernel "}) == ["kernel", "mcp"]
    assert selected_roles({"AOS_APP_ROLES": ""}) == ALL_ROLES
