"""Purpose alignment: does an event belong to this agent's purpose?

With a model configured the turn asks the model; this module is the offline judgement, and it
says so (``method: "lexical"``) wherever its result shows. It compares the words of the event
(its type and the text in its data) with the words of the agent's purpose, scope, success
criteria, goals and subscriptions, after stop-word removal and light stemming. Words that match
the declared out-of-scope list more than the purpose decline the event with the matching item
as the reason. An event whose type the agent subscribes to is in scope unless it matches an
out-of-scope item.
"""

from __future__ import annotations

import functools
import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from kernel.config.models import AgentConfig

METHOD = "lexical"
#: Share of the event's words that must appear in the purpose profile for a direct event.
DEFAULT_THRESHOLD = 0.2
#: Event types every agent accepts: its own schedules and platform notices.
SYSTEM_EVENT_PREFIXES = ("schedule.", "aos.")

_STOP_WORDS = frozenset(
    """a an and are as at be by for from has have in into is it its of on or so that the their
    them they this to was were will with within without every each any all our we you your
    should must can may not no only than then there these those when which who whom why how what
    do does did done get got new per via about after before over under up down out""".split()
)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]+")
_MAX_DATA_CHARS = 4000


@dataclass(frozen=True)
class Alignment:
    aligned: bool
    score: float
    reason: str
    method: str = METHOD
    matched_terms: list[str] = field(default_factory=list)
    out_of_scope: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "aligned": self.aligned,
            "score": round(self.score, 3),
            "reason": self.reason,
            "method": self.method,
            "matched_terms": self.matched_terms,
            "out_of_scope": self.out_of_scope,
        }


def stem(word: str) -> str:
    """A light suffix-stripping stemmer: enough to match 'invoices' with 'invoice'."""
    word = word.lower()
    for suffix in ("ations", "ation", "ings", "ing", "ies", "ied", "es", "ed", "ly", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + ("y" if suffix in ("ies", "ied") else "")
            break
    return word[:-1] if word.endswith("e") and len(word) > 4 else word


def terms(text: str) -> set[str]:
    return {stem(w) for w in _WORD.findall(text) if w.lower() not in _STOP_WORDS}


@functools.lru_cache(maxsize=1024)
def standing_terms(text: str) -> frozenset[str]:
    """``terms`` of text that comes back on every event (a purpose, a goal, a scope item): remembered."""
    return frozenset(terms(text))


def event_text(event_type: str, data: Any) -> str:
    """The words an event offers: its type's segments, and the keys and strings of its data."""
    parts = [event_type.replace(".", " ").replace("_", " ").replace("-", " ")]
    parts.extend(_strings(data))
    return " ".join(parts)[:_MAX_DATA_CHARS]


def subscribes_to(agent: AgentConfig, event_type: str) -> bool:
    return any(
        fnmatch.fnmatchcase(event_type, pattern)
        for subscription in agent.subscriptions
        for pattern in subscription.event_types
    )


def assess(agent: AgentConfig, event_type: str, data: Any, *, threshold: float = DEFAULT_THRESHOLD) -> Alignment:
    """Judge an event against the agent's purpose, without a model."""
    if event_type.startswith(SYSTEM_EVENT_PREFIXES):
        return Alignment(True, 1.0, f"'{event_type}' is a platform or schedule event")
    words = terms(event_text(event_type, data))
    if not words:
        return Alignment(False, 0.0, "the event carries no words to judge it by")
    profile = standing_terms(" ".join(_purpose_texts(agent)))
    matched = sorted(words & profile)
    score = len(matched) / len(words)

    worst_item, worst_overlap = None, 0
    for item in agent.scope.out_of_scope:
        overlap = len(words & standing_terms(item))
        if overlap > worst_overlap:
            worst_item, worst_overlap = item, overlap
    if worst_item is not None and worst_overlap >= max(1, len(matched)):
        return Alignment(
            False,
            score,
            f"the event is about '{worst_item}', which is outside this agent's scope",
            matched_terms=matched,
            out_of_scope=worst_item,
        )
    if subscribes_to(agent, event_type):
        return Alignment(True, max(score, threshold), f"the agent subscribes to '{event_type}'", matched_terms=matched)
    if score >= threshold:
        return Alignment(
            True, score, f"{len(matched)} of {len(words)} event terms match the purpose", matched_terms=matched
        )
    return Alignment(
        False,
        score,
        f"only {len(matched)} of {len(words)} event terms match the purpose (need {threshold:.0%})",
        matched_terms=matched,
    )


def _purpose_texts(agent: AgentConfig) -> Iterable[str]:
    yield agent.purpose
    yield agent.display_name
    yield from agent.scope.in_scope
    yield from agent.success_criteria
    for goal in agent.goals:
        yield goal.description
    for subscription in agent.subscriptions:
        for pattern in subscription.event_types:
            yield pattern.replace("*", " ").replace(".", " ")


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key).replace("_", " ")
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
