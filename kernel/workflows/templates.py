"""The workflow template language: dotted paths in ``{{ }}``, and nothing else.

    "{{ input.quarter }}"                 the value itself (a whole-value template keeps its JSON type)
    "Review {{ input.quarter }} now"      inside text: strings as they are, other values as JSON
    "{{ steps.cfo.output.items[0] }}"     list items by index

A path starts at a root (``input``, ``steps``, ``run``, or ``result`` in a step's ``outputs``)
and goes on through object keys (letters, digits, ``_``, ``-``) and ``[index]``. There are no
expressions, filters or calls, so a template can never run code; it can only read what the run
has. Objects and lists are templates all the way down (their keys are taken as they are).

Pure functions, no I/O: the orchestration renders with them, and validation checks them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

ROOTS = ("input", "steps", "run", "result")
OPEN, CLOSE = "{{", "}}"
_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_INDEX = re.compile(r"\[(\d{1,6})\]")
_WHOLE = re.compile(r"^\{\{(.*?)\}\}$", re.DOTALL)


class TemplateError(ValueError):
    """A template that cannot be read (syntax) or rendered (a path with no value)."""


class Missing:
    """The value of a path that leads nowhere (conditions treat it as equal to nothing)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = Missing()
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Reference:
    """One ``{{ path }}`` in a template string: the parsed path and its text."""

    path: Path
    text: str


def parse_path(text: str) -> Path:
    """``steps.cfo.output.items[0]`` as ``('steps', 'cfo', 'output', 'items', 0)``."""
    source = text.strip()
    if not source:
        raise TemplateError("an empty template '{{ }}': put a path such as input.quarter inside")
    parts: list[str | int] = []
    position = 0
    first = _SEGMENT.match(source, position)
    if first is None:
        raise TemplateError(f"'{source}' is not a path: it starts with a name such as input or steps")
    parts.append(first.group())
    position = first.end()
    while position < len(source):
        if source[position] == ".":
            segment = _SEGMENT.match(source, position + 1)
            if segment is None:
                raise TemplateError(f"'{source}': expected a name after '.' at character {position + 2}")
            parts.append(segment.group())
            position = segment.end()
            continue
        index = _INDEX.match(source, position)
        if index is None:
            raise TemplateError(f"'{source}': only names, '.' and [index] may form a path (found "
                                f"'{source[position]}' at character {position + 1}); templates hold no expressions")
        parts.append(int(index.group(1)))
        position = index.end()
    if parts[0] not in ROOTS:
        raise TemplateError(f"'{source}' starts at '{parts[0]}': a path starts at one of {', '.join(ROOTS)}")
    return tuple(parts)


def references(text: str) -> list[Reference]:
    """Every ``{{ path }}`` in a string (``TemplateError`` for a broken one)."""
    found: list[Reference] = []
    position = 0
    while True:
        start = text.find(OPEN, position)
        stray = text.find(CLOSE, position)
        if stray != -1 and (start == -1 or stray < start):
            raise TemplateError(f"'}}}}' at character {stray + 1} closes no '{{{{'")
        if start == -1:
            return found
        end = text.find(CLOSE, start + 2)
        if end == -1:
            raise TemplateError(f"'{{{{' at character {start + 1} is never closed with '}}}}'")
        inner = text[start + 2:end]
        if OPEN in inner:
            raise TemplateError(f"'{{{{' at character {start + 1} is never closed before the next '{{{{'")
        found.append(Reference(parse_path(inner), inner.strip()))
        position = end + 2


def walk(value: Any, where: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string inside ``value`` with its path (for validation)."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, where + (str(key),))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, where + (index,))


def lookup(context: Any, path: Path) -> Any:
    """The value at ``path`` in ``context``, or :data:`MISSING`."""
    current = context
    for part in path:
        if isinstance(part, int):
            if not isinstance(current, list) or part >= len(current):
                return MISSING
            current = current[part]
        elif isinstance(current, dict) and part in current:
            current = current[part]
        else:
            return MISSING
    return current


def resolve(context: Any, reference: Reference, *, lenient: bool = False) -> Any:
    """The value a reference names (``TemplateError`` naming the path when there is none, or
    ``None`` when ``lenient``)."""
    value = lookup(context, reference.path)
    if value is MISSING and lenient:
        return None
    if value is MISSING:
        raise TemplateError(f"'{{{{ {reference.text} }}}}' has no value: {_where_missing(context, reference.path)}")
    return value


def render(template: Any, context: Any, *, lenient: bool = False) -> Any:
    """The template with every path replaced by its value (strings, objects and lists alike);
    ``lenient``: a path with no value is null instead of an error (a run's output, where a
    skipped branch has none)."""
    if isinstance(template, str):
        return render_string(template, context, lenient=lenient)
    if isinstance(template, dict):
        return {key: render(item, context, lenient=lenient) for key, item in template.items()}
    if isinstance(template, list):
        return [render(item, context, lenient=lenient) for item in template]
    return template


def render_string(text: str, context: Any, *, lenient: bool = False) -> Any:
    found = references(text)
    if not found:
        return text
    whole = _WHOLE.match(text)
    if whole is not None and len(found) == 1:
        return resolve(context, found[0], lenient=lenient)
    pieces: list[str] = []
    position = 0
    for reference in found:
        start = text.find(OPEN, position)
        end = text.find(CLOSE, start) + 2
        pieces.append(text[position:start])
        pieces.append(_text(resolve(context, reference, lenient=lenient)))
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def operand(value: Any, context: Any) -> Any:
    """A condition operand: a whole template gives the value at its path (or :data:`MISSING`)."""
    if isinstance(value, str):
        found = references(value)
        whole = _WHOLE.match(value)
        if whole is not None and len(found) == 1:
            return lookup(context, found[0].path)
        if found:
            try:
                return render_string(value, context)
            except TemplateError:
                return MISSING
        return value
    if isinstance(value, (dict, list)):
        try:
            return render(value, context)
        except TemplateError:
            return MISSING
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _where_missing(context: Any, path: Path) -> str:
    current = context
    walked = ""
    for part in path:
        label = f"[{part}]" if isinstance(part, int) else (f".{part}" if walked else part)
        if isinstance(part, int):
            if not isinstance(current, list):
                return f"{walked or 'it'} is not a list"
            if part >= len(current):
                return f"{walked} has {len(current)} item(s)"
            current = current[part]
        elif isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, dict):
            keys = ", ".join(sorted(map(str, current))[:12]) or "nothing"
            return f"{walked or 'the run'} has no '{part}' (it has {keys})"
        else:
            return f"{walked} is {'null' if current is None else type(current).__name__}, not an object"
        walked += label
    return "it is missing"
