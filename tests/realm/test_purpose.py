"""Offline purpose alignment is computed from the agent's config, and labelled as lexical."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.config import load_configs
from realm_of_agents.purpose import assess, stem

REPO = Path(__file__).resolve().parents[2]
CONFIGS = load_configs([REPO / "agent_configs", REPO / "mcp_configs"])


def test_stemming_matches_plurals_and_verb_forms() -> None:
    assert stem("invoices") == stem("invoice")
    assert stem("budgets") == "budget"
    assert stem("forecasting") == "forecast"


def test_subscribed_event_is_aligned() -> None:
    result = assess(CONFIGS.agents["cfo"], "invoice.received", {"vendor": "Contoso", "amount": 1200})
    assert result.aligned and result.method == "lexical"
    assert "subscribes" in result.reason


def test_direct_event_matching_the_purpose_is_aligned() -> None:
    result = assess(CONFIGS.agents["cfo"], "question", {"text": "Is the cash flow forecast within budget?"})
    assert result.aligned, result
    assert {"forecast", "budget"} <= set(result.matched_terms)


def test_out_of_scope_event_is_declined_with_the_reason() -> None:
    result = assess(CONFIGS.agents["cfo"], "question", {"text": "Please change the product roadmap decisions"})
    assert not result.aligned
    assert result.out_of_scope == "product roadmap decisions"
    assert "outside this agent's scope" in result.reason


def test_unrelated_event_is_declined_with_a_score() -> None:
    result = assess(CONFIGS.agents["cto"], "question", {"text": "Plan the office summer party menu"})
    assert not result.aligned
    assert result.score < 0.2 and "match the purpose" in result.reason


def test_same_event_scores_differently_for_different_purposes() -> None:
    event = ("question", {"text": "Assess the outage incident and the security architecture risks"})
    cto, cfo = assess(CONFIGS.agents["cto"], *event), assess(CONFIGS.agents["cfo"], *event)
    assert cto.aligned and not cfo.aligned
    assert cto.score > cfo.score


@pytest.mark.parametrize("event_type", ["schedule.tick", "aos.config.changed"])
def test_schedule_and_platform_events_are_always_aligned(event_type: str) -> None:
    assert assess(CONFIGS.agents["ceo"], event_type, {}).aligned
