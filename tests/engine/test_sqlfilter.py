"""Service Bus SQL and correlation filters: what a subscription rule selects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from kernel.engine.sqlfilter import CorrelationRule, SqlFilterError, SqlRule, parse, rule_matches


@dataclass(frozen=True)
class Message:
    message_id: str | None = "m-1"
    correlation_id: str | None = "order-42"
    to: str | None = "warehouse"
    reply_to: str | None = None
    subject: str | None = "orders.created"
    session_id: str | None = None
    content_type: str | None = "application/json"
    application_properties: dict[str, Any] = field(default_factory=dict)


MESSAGE = Message(
    application_properties={
        "Priority": 7,
        "weight": 2.5,
        "region": "eu-west",
        "express": True,
        "nothing": None,
        "my-prop": "dashed",
        "code": "100%_done",
        "quote": "it's",
    }
)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # literal filters
        ("1=1", True),
        ("1=0", False),
        # comparisons, numeric promotion, arithmetic with C# integer semantics
        ("Priority = 7", True),
        ("Priority <> 7", False),
        ("Priority != 8", True),
        ("Priority > 5 AND Priority <= 7", True),
        ("Priority >= 7.0", True),
        ("weight < 3", True),
        ("Priority + 1 = 8", True),
        ("(Priority - 1) * 2 = 12", True),
        ("Priority / 2 = 3", True),
        ("Priority % 4 = 3", True),
        ("-7 / 2 = -3", True),
        ("-7 % 3 = -1", True),
        ("weight * 2 = 5.0", True),
        ("-Priority = -7", True),
        ("1.5E1 = 15", True),
        ("Priority / 0 = 1", False),
        # strings: single quotes, '' escaping, + concatenation, ordinal (case-sensitive) equality
        ("region = 'eu-west'", True),
        ("region = 'EU-WEST'", False),
        ("quote = 'it''s'", True),
        ("region + '/1' = 'eu-west/1'", True),
        # booleans
        ("express = TRUE", True),
        ("express = false", False),
        # names: case-insensitive, user. scope, bracketed and quoted identifiers
        ("priority = 7", True),
        ("user.PRIORITY = 7", True),
        ("[my-prop] = 'dashed'", True),
        ('"my-prop" = \'dashed\'', True),
        ("user.[my-prop] = 'dashed'", True),
        # system properties
        ("sys.Label = 'orders.created'", True),
        ("sys.Subject = 'orders.created'", True),
        ("sys.label LIKE 'orders.%'", True),
        ("SYS.To = 'warehouse'", True),
        ("sys.CorrelationId = 'order-42'", True),
        ("sys.MessageId = 'm-1'", True),
        ("sys.ContentType = 'application/json'", True),
        ("sys.ReplyTo IS NULL", True),
        ("sys.SessionId IS NOT NULL", False),
        ("EXISTS(sys.To)", True),
        ("EXISTS(sys.ReplyTo)", False),
        # three-valued logic: a missing property is unknown
        ("missing = 1", False),
        ("missing <> 1", False),
        ("NOT (missing = 1)", False),
        ("missing = 1 OR Priority = 7", True),
        ("missing = 1 AND Priority = 7", False),
        ("NOT (missing = 1 AND Priority = 8)", True),
        ("NOT (missing = 1 OR Priority = 8)", False),
        ("missing + 1 = 1", False),
        ("missing IN (1, 2)", False),
        ("missing NOT IN (1, 2)", False),
        ("missing LIKE '%'", False),
        ("missing NOT LIKE 'x'", False),
        # IS NULL / EXISTS distinguish a missing property from one set to null
        ("missing IS NULL", True),
        ("nothing IS NULL", True),
        ("region IS NOT NULL", True),
        ("EXISTS(nothing)", True),
        ("EXISTS(missing)", False),
        ("NOT EXISTS(missing)", True),
        # IN lists
        ("region IN ('us-east', 'eu-west')", True),
        ("region IN ('us-east')", False),
        ("region NOT IN ('us-east', 'us-west')", True),
        ("Priority IN (1, 7.0, 9)", True),
        ("sys.To IN ('Store5', 'warehouse') OR region = 'x'", True),
        ("region IN ('us-east', NULL)", False),
        ("region NOT IN ('us-east', NULL)", False),
        # LIKE: % and _, ESCAPE, anchored and case-sensitive
        ("region LIKE 'eu-%'", True),
        ("region LIKE 'eu-_est'", True),
        ("region LIKE 'eu'", False),
        ("region LIKE 'EU-%'", False),
        ("region NOT LIKE 'us-%'", True),
        ("code LIKE '100!%!_done' ESCAPE '!'", True),
        ("code LIKE '100\\%%' ESCAPE '\\'", True),
        ("region LIKE 'eu!%' ESCAPE '!'", False),
        ("code LIKE '100%done'", True),
        # case-insensitive keywords and operator precedence
        ("priority = 7 and not region = 'x' or false = true", True),
        ("Priority = 1 OR Priority = 7 AND region = 'nope'", False),
        ("(Priority = 1 OR Priority = 7) AND region = 'eu-west'", True),
        ("Priority + 2 * 3 = 13", True),
        # operations C# cannot bind fail the rule: no match either way
        ("region = 7", False),
        ("region <> 7", False),
        ("NOT (region = 7)", False),
        ("region > 'a'", False),
        ("express > FALSE", False),
        ("Priority LIKE '7'", False),
        # property() reads a property named at evaluation time
        ("property('region') = 'eu-west'", True),
        ("p('sys.Label') = 'orders.created'", True),
    ],
)
def test_filter_expression(sql: str, expected: bool) -> None:
    assert parse(sql).matches(MESSAGE) is expected


def test_short_circuit_spares_an_error_on_the_deciding_side() -> None:
    assert parse("Priority = 7 OR region = 7").matches(MESSAGE)
    assert not parse("Priority = 8 AND region = 7").matches(MESSAGE)


def test_missing_system_value_is_unknown_not_an_error() -> None:
    assert parse("sys.ReplyTo = 'x' OR 1=1").matches(MESSAGE)
    assert not parse("sys.ReplyTo = 'x'").matches(MESSAGE)


@pytest.mark.parametrize(
    ("sql", "column", "fragment"),
    [
        ("(Priority = 7", 14, "expected ')'"),
        ("Priority =", 11, "expected a value"),
        ("Priority", 9, "expected a comparison operator"),
        ("Priority = 7 region", 14, "expected AND, OR or end of filter"),
        ("region = 'eu", 10, "unterminated string constant"),
        ("[my-prop = 1", 1, "unterminated delimited identifier"),
        ("sys.Colour = 'red'", 5, "unknown system property 'sys.Colour'"),
        ("and = 1", 1, "reserved keyword"),
        ("NOT Priority", 5, "expected a condition"),
        ("Priority = 1 AND 2", 18, "expected a condition"),
        ("(Priority = 1) + 1 = 2", 2, "expected a value, found a condition"),
        ("1 IS NULL", 1, "IS [NOT] NULL applies to a property only"),
        ("region IN ()", 12, "expected a value"),
        ("region IN ('a' 'b')", 16, "expected ',' or ')'"),
        ("EXISTS(1)", 8, "expected a property name inside EXISTS"),
        ("Priority @ 1", 10, "unexpected character '@'"),
        ("", 1, "expected a filter expression"),
        ("99999999999999999999 = 1", 1, "out of range"),
        ("sys. = 1", 6, "expected a property name after 'sys.'"),
    ],
)
def test_parse_error_names_position_and_expectation(sql: str, column: int, fragment: str) -> None:
    with pytest.raises(SqlFilterError) as caught:
        parse(sql)
    assert caught.value.column == column
    assert fragment in str(caught.value)
    assert str(caught.value).endswith(f"at column {column} in: {sql}")


def test_sql_rule_is_validated_when_constructed() -> None:
    with pytest.raises(SqlFilterError, match="expected"):
        SqlRule("broken", "Priority = = 1")
    assert rule_matches(SqlRule("fine", "Priority = 7"), MESSAGE)


def test_correlation_rule_matches_all_set_properties() -> None:
    assert rule_matches(CorrelationRule("c", correlation_id="order-42", subject="orders.created"), MESSAGE)
    assert not rule_matches(CorrelationRule("c", correlation_id="order-42", subject="orders.deleted"), MESSAGE)
    assert rule_matches(CorrelationRule("c", to="warehouse", application_properties={"REGION": "eu-west"}), MESSAGE)
    assert rule_matches(CorrelationRule("c", application_properties={"Priority": 7.0}), MESSAGE)
    assert not rule_matches(CorrelationRule("c", application_properties={"express": 1}), MESSAGE)
    assert not rule_matches(CorrelationRule("c", application_properties={"missing": None}), MESSAGE)
    assert not rule_matches(CorrelationRule("c", correlation_id="ORDER-42"), MESSAGE)


def test_correlation_rule_needs_a_condition() -> None:
    with pytest.raises(ValueError, match="at least one"):
        CorrelationRule("empty")
