"""A step's ``when``: structured operators over values, never an expression string.

Conditions arrive as plain JSON (the orchestration holds the workflow as data), one operator
per object: ``equals``, ``not_equals``, ``in``, ``greater_than``, ``less_than`` (operands are
values; a whole template such as ``"{{ steps.approve.output.approved }}"`` is the value at its
path), ``exists`` (a path), ``not``, ``all``, ``any``. A path with no value is *missing*: it
equals nothing, is in nothing and compares false, so a condition on a step that did not run
is simply false rather than an error.
"""

from __future__ import annotations

from typing import Any

from kernel.workflows.templates import (
    MISSING,
    TemplateError,
    lookup,
    operand,
    parse_path,
)


def holds(condition: dict[str, Any], context: dict[str, Any]) -> bool:
    """Whether ``condition`` holds over ``context`` (``input``, ``steps``, ``run``)."""
    (operator, argument), = ((key, value) for key, value in condition.items() if value is not None)
    if operator == "all":
        return all(holds(item, context) for item in argument)
    if operator == "any":
        return any(holds(item, context) for item in argument)
    if operator == "not":
        return not holds(argument, context)
    if operator == "exists":
        try:
            value = lookup(context, parse_path(argument))
        except TemplateError:
            return False
        return value is not MISSING and value is not None
    left, right = (operand(item, context) for item in argument)
    if operator == "equals":
        return left is not MISSING and right is not MISSING and _same(left, right)
    if operator == "not_equals":
        return left is MISSING or right is MISSING or not _same(left, right)
    if operator == "in":
        return left is not MISSING and isinstance(right, list) and any(_same(left, item) for item in right)
    if operator in ("greater_than", "less_than"):
        if not (_number(left) and _number(right)):
            return False
        return left > right if operator == "greater_than" else left < right
    raise ValueError(f"unknown condition operator '{operator}'")


def _same(left: Any, right: Any) -> bool:
    """JSON equality: true is not 1, 1 is 1.0."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    return bool(left == right)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
