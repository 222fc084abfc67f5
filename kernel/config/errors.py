"""Pydantic validation errors rewritten as problems a person can act on.

Pydantic reports locations in model terms (with union branch tags and ``[key]`` markers) and
messages in Python terms. Here they become JSON paths into the user's file, a line and column,
"expected ... found ..." phrased in JSON/YAML terms, and "did you mean" for unknown keys.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from pydantic import BaseModel, ValidationError

from kernel.config.models import PATTERN_RULES
from kernel.config.parsing import JsonPath, Parsed, format_path
from kernel.config.problems import Problem

#: Keys whose values may hold credentials: a wrong value there is described by its type only.
SENSITIVE_KEYS = {"env", "headers"}

_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "an object (mapping)",
    "model_type": "an object (mapping)",
    "model_attributes_type": "an object (mapping)",
}


def describe(value: Any) -> str:
    """A value in JSON/YAML words, short enough for one line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return "an empty string" if not value else f"the string {json.dumps(shown)}"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def kind_of(value: Any) -> str:
    """Only the JSON type of a value, for places where the value itself may be a secret."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null"


def translate(
    error: ValidationError, *, model: type[BaseModel], parsed: Parsed, file: str
) -> list[Problem]:
    """All errors of one validation, merged per path (union branches become one problem)."""
    schema = model.model_json_schema()
    merged: dict[JsonPath, list[dict[str, Any]]] = {}
    for detail in error.errors(include_url=False):
        path = data_path(detail["loc"], parsed.data, detail["type"])
        merged.setdefault(path, []).append(detail)
    return [_problem(path, details, schema, parsed, file) for path, details in merged.items()]


def data_path(loc: tuple[Any, ...], data: Any, error_type: str) -> JsonPath:
    """Follow ``loc`` through the actual data, dropping pydantic's union and key markers."""
    path: list[str | int] = []
    current = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if part == "[key]":
            continue
        if isinstance(current, dict) and isinstance(part, str) and part in current:
            path.append(part)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            path.append(part)
            current = current[part]
        elif last and error_type == "missing" and isinstance(part, str):
            path.append(part)
    return tuple(path)


def _problem(
    path: JsonPath, details: list[dict[str, Any]], schema: dict[str, Any], parsed: Parsed, file: str
) -> Problem:
    first = details[0]
    error_type = first["type"]
    sensitive = any(part in SENSITIVE_KEYS for part in path if isinstance(part, str))
    value = _value_at(parsed.data, path)
    found = kind_of(value) if sensitive else describe(value)
    position = parsed.position(path, prefer_key=error_type in {"extra_forbidden", "missing"})
    line, column = (position.line, position.column) if position else (None, None)
    location = dict(file=file, path=format_path(path), line=line, column=column)

    if error_type == "missing":
        field = path[-1] if path else "?"
        return Problem(
            **location,
            message=f"missing required field '{field}'",
            expected=f"a value for '{field}'",
            found="nothing",
            code="missing",
        )
    if error_type == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        allowed = allowed_keys(schema, path[:-1])
        hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        message = f"unknown key '{key}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
        return Problem(
            **location,
            message=message,
            expected=f"one of: {', '.join(allowed)}" if allowed else "no keys here",
            found=f"'{key}'",
            code="unknown-key",
        )
    expected = _merge_expected(details)
    if error_type in _TYPE_WORDS and all(d["type"] in _TYPE_WORDS for d in details):
        hint = ""
        from_yaml = not file.endswith(".json")
        if from_yaml and "a string" in expected and isinstance(value, (int, float, bool)):
            hint = " (in YAML, quote it to make it a string)"
        return Problem(
            **location,
            message=f"wrong type{hint}",
            expected=expected,
            found=found,
            code="wrong-type",
        )
    if error_type == "value_error" and len(details) == 1:
        reason = str(first.get("ctx", {}).get("error", first["msg"]))
        return Problem(**location, message=reason, found=found, code="invalid-value")
    message = {
        "string_pattern_mismatch": "invalid format",
        "literal_error": "not one of the allowed values",
    }.get(error_type, "value out of range")
    return Problem(**location, message=message, expected=expected, found=found, code="invalid-value")


def _merge_expected(details: list[dict[str, Any]]) -> str:
    phrases: list[str] = []
    for detail in details:
        phrase = _expected(detail)
        if phrase not in phrases:
            phrases.append(phrase)
    return " or ".join(phrases)


def _expected(detail: dict[str, Any]) -> str:
    error_type = detail["type"]
    ctx = detail.get("ctx", {})
    if error_type in _TYPE_WORDS:
        return _TYPE_WORDS[error_type]
    if error_type == "string_pattern_mismatch":
        return PATTERN_RULES.get(ctx.get("pattern", ""), f"text matching {ctx.get('pattern')}")
    if error_type == "literal_error":
        return f"one of {ctx.get('expected')}"
    if error_type == "value_error":
        return str(ctx.get("error", detail["msg"]))
    message: str = detail["msg"]
    if message.startswith("Input should be "):
        return message[len("Input should be ") :]
    return message[0].lower() + message[1:] if message else error_type


def _value_at(data: Any, path: JsonPath) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def allowed_keys(schema: dict[str, Any], path: JsonPath) -> list[str]:
    """The property names the schema allows for the object at ``path``."""
    node = _resolve(schema, schema)
    for part in path:
        node = _child(schema, node, part)
        if node is None:
            return []
    return sorted(_object_branch(schema, node).get("properties", {}))


def _resolve(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = root["$defs"][name]
    return node


def _object_branch(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    node = _resolve(root, node)
    for branch in node.get("anyOf", []):
        branch = _resolve(root, branch)
        if branch.get("type") == "object" or "properties" in branch:
            return branch
        if branch.get("type") == "array":
            return branch
    return node


def _child(root: dict[str, Any], node: dict[str, Any], part: str | int) -> dict[str, Any] | None:
    node = _object_branch(root, node)
    if isinstance(part, int):
        items = node.get("items")
        return _resolve(root, items) if isinstance(items, dict) else None
    prop = node.get("properties", {}).get(part)
    if prop is None and isinstance(node.get("additionalProperties"), dict):
        prop = node["additionalProperties"]
    return _resolve(root, prop) if isinstance(prop, dict) else None
