"""Policy documents, how policies combine for an agent, the pure checks, and quiet-hours math
(wrap at midnight, daylight saving), plus what `aos validate` says about policies."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from kernel.config.loader import load_configs
from kernel.config.models import PolicyConfig
from kernel.governance.policy import (
    EffectivePolicy,
    Refusal,
    check_model,
    check_tokens,
    effective_policy,
    quiet_state,
    turn_limit,
)

UTC = timezone.utc


def policy(policy_id: str, applies_to: list[str] | None = None, **limits: Any) -> PolicyConfig:
    return PolicyConfig.model_validate({"kind": "policy", "id": policy_id, "applies_to": applies_to or ["*"],
                                        **limits})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def quiet(*windows: dict[str, Any], zone: str = "UTC", action: str = "defer", policy_id: str = "quiet") -> PolicyConfig:
    return policy(policy_id, quiet_hours={"timezone": zone, "windows": list(windows), "action": action})


# ----------------------------------------------------------------------------------------------
# The document
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("limits", "message"), [
    ({}, "a policy sets at least one of tokens_per_day"),
    ({"tool_calls": {}}, "'tool_calls' needs 'per_minute', 'per_hour' or both"),
    ({"models": {}}, "'models' needs 'endpoints', 'adapters' or both"),
    ({"tokens_per_day": 0}, "greater than or equal to 1"),
    ({"quiet_hours": {"timezone": "Mars/Olympus", "windows": [{"start": "22:00", "end": "06:00"}]}},
     "unknown IANA time zone 'Mars/Olympus'"),
    ({"quiet_hours": {"windows": [{"start": "08:00", "end": "08:00"}]}}, "for a whole day use '00:00' to '24:00'"),
    ({"quiet_hours": {"windows": [{"start": "24:00", "end": "06:00"}]}}, "cannot start at '24:00'"),
    ({"quiet_hours": {"windows": [{"start": "7:00", "end": "08:00"}]}}, "String should match pattern"),
    ({"quiet_hours": {"windows": [{"start": "07:00", "end": "08:00", "days": ["mon", "mon"]}]}}, "'mon' appears twice"),
    ({"quiet_hours": {"windows": [{"start": "07:00", "end": "08:00", "days": ["monday"]}]}}, "'mon'"),
    ({"quiet_hours": {"windows": []}}, "at least 1 item"),
    ({"models": {"adapters": ["Finance"]}}, "String should match pattern"),
])
def test_bad_policies_are_refused_with_the_reason(limits: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        policy("p", **limits)


def test_selection_by_id_and_pattern_and_disabled_policies_select_nothing() -> None:
    finance = policy("finance", ["cfo", "fin-*", "ledger-?"], tokens_per_day=10)
    assert [a for a in ("cfo", "ceo", "fin-ops", "finance", "ledger-1", "ledger-12") if finance.selects(a)] == [
        "cfo", "fin-ops", "ledger-1"]
    assert not policy("off", tokens_per_day=1, enabled=False).selects("cfo")
    with pytest.raises(ValidationError, match="'cfo' appears twice"):
        policy("p", ["cfo", "cfo"], tokens_per_day=1)
    with pytest.raises(ValidationError, match="String should match pattern"):
        policy("p", ["CFO"], tokens_per_day=1)


def test_a_config_with_a_policy_reports_problems_with_file_line_and_rule(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bad.yaml").write_text(
        "kind: policy\nid: bad\napplies_to: ['*']\nquiet_hours:\n  windows:\n"
        "    - start: '25:00'\n      end: '06:00'\n")
    (tmp_path / "policies" / "upper.yaml").write_text(
        "kind: policy\nid: upper\napplies_to: [CFO]\ntokens_per_day: 5\n")
    configs = load_configs([tmp_path])
    clock, selector = configs.errors
    assert clock.file.endswith("bad.yaml") and clock.line == 6 and clock.path == "$.quiet_hours.windows[0].start"
    assert "'HH:MM' on the 24-hour clock" in clock.render()
    assert selector.path == "$.applies_to[0]" and "an agent id, or a pattern of one with '*'" in selector.render()
    assert configs.policies == {}


# ----------------------------------------------------------------------------------------------
# Combination: the most restrictive wins, and remembers which policies set it
# ----------------------------------------------------------------------------------------------


def test_policies_combine_most_restrictive_wins_and_name_their_sources() -> None:
    platform = policy("platform", ["*"], tokens_per_day=1000, tool_calls={"per_minute": 60, "per_hour": 100},
                      max_steps_per_turn=8, models={"endpoints": ["lab", "offline", "azure"]})
    finance = policy("finance", ["cfo"], tokens_per_day=200, tool_calls={"per_minute": 60},
                     max_steps_per_turn=8, models={"endpoints": ["lab", "azure"], "adapters": ["cfo-finance"]},
                     quiet_hours={"windows": [{"start": "22:00", "end": "06:00"}], "action": "refuse"})
    other = policy("other", ["ceo"], tokens_per_day=1)
    cfo = effective_policy([platform, finance, other], "cfo")
    assert cfo.policies == ("finance", "platform")
    assert (cfo.tokens_per_day.value, cfo.tokens_per_day.policies) == (200, ("finance",))
    assert (cfo.tool_calls_per_minute.value, cfo.tool_calls_per_minute.policies) == (60, ("finance", "platform"))
    assert (cfo.tool_calls_per_hour.value, cfo.tool_calls_per_hour.policies) == (100, ("platform",))
    assert cfo.max_steps_per_turn.policies == ("finance", "platform")
    assert cfo.max_tool_calls_per_turn is None
    assert cfo.allowed_endpoints() == ["azure", "lab"] and cfo.allowed_adapters() == ["cfo-finance"]
    assert [w.policy for w in cfo.quiet_windows] == ["finance"]
    # plain JSON both ways (it crosses the turn's activity boundary)
    assert EffectivePolicy.from_dict(cfo.to_dict()) == cfo
    nobody = effective_policy([finance], "ceo")
    assert nobody.empty and nobody == EffectivePolicy("ceo")


def test_model_allow_lists_refuse_and_name_every_policy_that_forbids() -> None:
    one = policy("one", models={"endpoints": ["lab", "offline"], "adapters": ["cfo-finance"]})
    two = policy("two", models={"endpoints": ["lab"], "adapters": ["cfo-finance@2", "exec-voice"]})
    combined = effective_policy([one, two], "cfo")
    assert check_model(combined, "lab", ("cfo-finance", "2")) is None
    assert check_model(combined, "lab", None) is None  # the base model: governed by the endpoint list alone
    refused = check_model(combined, "offline", None)
    assert (refused.rule, refused.policies, refused.observed, refused.limit) == (
        "models.endpoints", ("two",), "offline", ["lab"])
    assert refused.reason == "policy 'two' does not allow model calls to the offline provider (allowed: lab)"
    refused = check_model(combined, "lab", ("cfo-finance", "latest"))
    assert (refused.rule, refused.policies, refused.observed) == ("models.adapters", ("two",), "cfo-finance@latest")
    refused = check_model(combined, "azure", ("exec-voice", "1"))
    assert refused.policies == ("one", "two") and "policies 'one', 'two' do not allow" in refused.reason
    assert refused.actor == "policy:one,two"
    assert Refusal.from_dict(refused.to_dict()) == refused


def test_the_token_budget_refuses_once_the_days_count_reaches_it() -> None:
    budget = effective_policy([policy("budget", tokens_per_day=100)], "cfo")
    day = date(2030, 1, 1)
    assert check_tokens(budget, 99, day) is None
    refused = check_tokens(budget, 100, day)
    assert (refused.rule, refused.limit, refused.observed, refused.details["day"]) == (
        "tokens_per_day", 100, 100, "2030-01-01")
    assert check_tokens(EffectivePolicy("cfo"), 10**9, day) is None


def test_per_turn_limits_take_the_smaller_and_say_whether_a_policy_set_it() -> None:
    capped = effective_policy([policy("cap", max_steps_per_turn=3)], "cfo")
    assert turn_limit(6, capped.max_steps_per_turn) == (3, capped.max_steps_per_turn)
    assert turn_limit(2, capped.max_steps_per_turn) == (2, None)  # the agent asks for less: its own limit
    assert turn_limit(3, capped.max_steps_per_turn) == (3, None)
    assert turn_limit(6, None) == (6, None)


# ----------------------------------------------------------------------------------------------
# Quiet hours: a pure function of a UTC instant
# ----------------------------------------------------------------------------------------------


def test_a_window_ending_before_it_starts_wraps_past_midnight_on_its_days() -> None:
    nights = effective_policy([quiet({"start": "22:00", "end": "06:00", "days": ["fri"]})], "cfo")
    # Friday 2030-01-04 22:00 until Saturday 06:00
    assert not quiet_state(nights, at("2030-01-04T21:59:59")).quiet
    state = quiet_state(nights, at("2030-01-04T22:00:00"))
    assert state.quiet and state.until == at("2030-01-05T06:00:00") and state.action == "defer"
    assert quiet_state(nights, at("2030-01-05T05:59:59")).until == at("2030-01-05T06:00:00")
    assert not quiet_state(nights, at("2030-01-05T06:00:00")).quiet
    # Saturday night is not a Friday window
    assert not quiet_state(nights, at("2030-01-05T23:00:00")).quiet
    # Thursday night neither (the Friday window starts on Friday)
    assert not quiet_state(nights, at("2030-01-04T01:00:00")).quiet


def test_until_follows_windows_that_chain_into_each_other_and_refuse_beats_defer() -> None:
    evening = quiet({"start": "18:00", "end": "24:00"}, policy_id="evening")
    night = quiet({"start": "00:00", "end": "07:30"}, action="refuse", policy_id="night")
    both = effective_policy([evening, night], "ops")
    state = quiet_state(both, at("2030-01-01T19:00:00"))
    assert state.until == at("2030-01-02T07:30:00")  # through midnight into the next window
    assert state.action == "defer" and state.policies == ("evening",)  # only the evening covers 19:00
    state = quiet_state(both, at("2030-01-02T01:00:00"))
    assert state.action == "refuse" and state.policies == ("night",)
    refusal = state.refusal(at("2030-01-02T01:00:00"))
    assert refusal.rule == "quiet_hours" and refusal.details == {"action": "refuse",
                                                                 "until": "2030-01-02T07:30:00+00:00"}
    # overlapping windows of two policies at one moment: refuse wins, and names its policy
    overlap = effective_policy([quiet({"start": "12:00", "end": "13:00"}, policy_id="lunch"),
                                quiet({"start": "12:30", "end": "14:00"}, action="refuse", policy_id="meeting")], "x")
    state = quiet_state(overlap, at("2030-01-01T12:45:00"))
    assert (state.action, state.policies, state.until) == ("refuse", ("meeting",), at("2030-01-01T14:00:00"))


def test_always_quiet_is_capped_so_a_deferred_turn_looks_again() -> None:
    always = effective_policy([quiet({"start": "00:00", "end": "24:00"})], "x")
    now = at("2030-01-01T10:00:00")
    state = quiet_state(always, now)
    assert state.quiet and state.until == now + timedelta(days=8)


def test_windows_follow_daylight_saving_in_their_time_zone() -> None:
    nights = effective_policy([quiet({"start": "22:00", "end": "06:00"}, zone="Europe/Berlin")], "cfo")
    # winter: UTC+1, so 22:00-06:00 local is 21:00-05:00 UTC
    assert quiet_state(nights, at("2030-01-15T21:00:00")).until == at("2030-01-16T05:00:00")
    assert not quiet_state(nights, at("2030-01-15T20:59:59")).quiet
    # summer: UTC+2, 20:00-04:00 UTC
    assert quiet_state(nights, at("2030-07-15T20:00:00")).until == at("2030-07-16T04:00:00")
    assert not quiet_state(nights, at("2030-07-15T04:00:00")).quiet
    # the spring-forward night (Sunday 2030-03-31 02:00 -> 03:00): the night is an hour shorter
    state = quiet_state(nights, at("2030-03-30T21:00:00"))
    assert state.until == at("2030-03-31T04:00:00")
    # the fall-back night (Sunday 2030-10-27 03:00 -> 02:00): an hour longer
    state = quiet_state(nights, at("2030-10-26T20:00:00"))
    assert state.until == at("2030-10-27T05:00:00")


def test_a_time_inside_the_spring_forward_gap_is_read_with_the_offset_before_the_change() -> None:
    gap = effective_policy([quiet({"start": "02:30", "end": "04:00"}, zone="Europe/Berlin")], "x")
    # 2030-03-31 02:30 does not exist in Berlin; read as +01:00 it is 01:30 UTC (03:30 CEST)
    assert not quiet_state(gap, at("2030-03-31T01:29:59")).quiet
    assert quiet_state(gap, at("2030-03-31T01:30:00")).until == at("2030-03-31T02:00:00")  # 04:00 CEST


def test_new_york_and_days_are_the_local_days() -> None:
    weekend = effective_policy([quiet({"start": "00:00", "end": "24:00", "days": ["sat", "sun"]},
                                      zone="America/New_York")], "x")
    # Friday 2030-01-04 23:30 in New York is Saturday 04:30 UTC: still a weekday there
    assert not quiet_state(weekend, at("2030-01-05T04:30:00")).quiet
    state = quiet_state(weekend, at("2030-01-05T05:00:00"))  # Saturday 00:00 in New York
    assert state.quiet and state.until == at("2030-01-07T05:00:00")  # Monday 00:00 EST
    with pytest.raises(ValueError, match="timezone-aware"):
        quiet_state(weekend, datetime(2030, 1, 5))


# ----------------------------------------------------------------------------------------------
# aos validate: warnings, never errors (a policy must not un-declare an agent)
# ----------------------------------------------------------------------------------------------


def _load(tmp_path: Path, files: dict[str, str]) -> Any:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return load_configs([tmp_path])


AGENT = "kind: agent\nid: {id}\ndisplay_name: X\npurpose: Keep the books.\n{model}"
ENDPOINT = ("kind: inference_endpoint\nid: lab\ntype: vllm\nurl: http://localhost:8000/v1\nbase_model: base\n"
            "enabled: {enabled}\n")
ADAPTER = "kind: adapter\nname: {name}\nversion: '1'\nbase_model: base\ntraining_data: {{uri: x.jsonl}}\n"


def test_validate_warns_about_policies_that_select_nothing_or_name_what_is_not_declared(tmp_path: Path) -> None:
    configs = _load(tmp_path, {
        "cfo.yaml": AGENT.format(id="cfo", model=""),
        "policies/typo.yaml": "kind: policy\nid: typo\napplies_to: [cf0, 'x-*']\ntokens_per_day: 5\n",
        "policies/models.yaml": "kind: policy\nid: models\napplies_to: [cfo]\nmodels:\n"
                                "  endpoints: [lab, offline]\n  adapters: [cfo-financ]\n",
    })
    assert configs.errors == [] and set(configs.agents) == {"cfo"} and set(configs.policies) == {"models", "typo"}
    rendered = [p.render() for p in configs.problems]
    assert any("typo.yaml:3" in r and "policy 'typo' applies to no declared agent (cf0, x-*)" in r for r in rendered)
    assert any("models.yaml" in r and "$.models.endpoints[0]: unknown inference endpoint 'lab'" in r
               for r in rendered), rendered
    assert any("unknown adapter 'cfo-financ'" in r for r in rendered)
    assert all(p.severity == "warning" for p in configs.problems)


def test_validate_warns_when_an_agents_endpoint_or_adapter_is_forbidden_and_keeps_the_agent(tmp_path: Path) -> None:
    model = "model:\n  endpoint: lab\n  adapter: {name: cfo-finance, version: '2'}\n"
    configs = _load(tmp_path, {
        "cfo.yaml": AGENT.format(id="cfo", model=model),
        "endpoints/lab.yaml": ENDPOINT.format(enabled="false"),
        "cfo-finance.yaml": ADAPTER.format(name="cfo-finance"),
        "policies/strict.yaml": "kind: policy\nid: strict\napplies_to: ['*']\nmodels:\n"
                                "  endpoints: [lab]\n  adapters: [cfo-finance@1]\n",
    })
    assert "cfo" in configs.agents and configs.errors == []
    codes = {p.code: p for p in configs.problems}
    endpoint = codes["policy-forbids-endpoint"]
    assert endpoint.file.endswith("cfo.yaml") and endpoint.path == "$.model.endpoint"
    assert "is disabled, so this agent's calls go to the offline provider, which policy 'strict'" in endpoint.message
    adapter = codes["policy-forbids-adapter"]
    assert adapter.path == "$.model.adapter.name"
    assert "does not allow adapter 'cfo-finance' (version 2)" in adapter.message


def test_the_sample_policies_are_valid_and_apply_to_the_sample_agents() -> None:
    repo = Path(__file__).resolve().parents[2]
    configs = load_configs([repo / "agent_configs", repo / "mcp_configs"])
    assert configs.problems == []
    assert {"platform-default", "finance-controls"} <= set(configs.policies)
    cfo = effective_policy(configs.policies.values(), "cfo")
    assert cfo.policies == ("finance-controls", "platform-default")
    assert check_model(cfo, "offline", ("cfo-finance", "latest")) is None  # the demo runs offline
    assert cfo.quiet_windows == ()  # `make run` must not depend on the hour


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "agent_configs" / "policies").glob(
    "*.yaml")), ids=lambda p: p.name)
def test_every_sample_policy_declares_its_schema_and_validates_against_it(path: Path) -> None:
    import jsonschema
    import yaml

    from kernel.config.schemas import load

    raw = yaml.safe_load(path.read_text())
    assert raw["$schema"] == "../../schemas/policy.schema.json"
    jsonschema.Draft202012Validator(load(path.parents[2] / "schemas", "policy")).validate(raw)
    broken = {**raw, "quiet_hours": {"windows": [{"start": "25:00", "end": "06:00"}]}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(load(path.parents[2] / "schemas", "policy")).validate(broken)
