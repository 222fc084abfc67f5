"""Turning config text into data plus a map from JSON paths to source positions.

JSON and YAML both go through here so that every later error can name a line and column.
Positions are found only when something asks for one (an error, a document's line): composing a
YAML node tree for every file costs about ten times the parse itself, and most files have no error.
YAML is read with YAML 1.2-like rules for the scalars that most often surprise people: only
``true``/``false`` are booleans (``on``, ``yes`` and ``no`` stay strings) and dates stay strings.
Duplicate keys are errors in both formats, since the last one silently winning hides mistakes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

JsonPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    line: int
    column: int


@dataclass
class ParseError(Exception):
    """Text that is not valid JSON or YAML; line and column are 1-based."""

    message: str
    line: int | None = None
    column: int | None = None


class Parsed:
    """Parsed data and, found from the text when first asked, where each JSON path stands."""

    def __init__(self, data: Any, text: str | None = None) -> None:
        self.data = data
        self._text = text
        self._keys: dict[JsonPath, Position] | None = None
        self._values: dict[JsonPath, Position] | None = None

    @property
    def keys(self) -> dict[JsonPath, Position]:
        return self._indexed()[0]

    @property
    def values(self) -> dict[JsonPath, Position]:
        return self._indexed()[1]

    def position(self, path: JsonPath, *, prefer_key: bool = False) -> Position | None:
        """Where ``path`` stands; falls back to the nearest enclosing element."""
        keys, values = self._indexed()
        for depth in range(len(path), -1, -1):
            prefix = path[:depth]
            first, second = (keys, values) if prefer_key else (values, keys)
            found = first.get(prefix) or second.get(prefix)
            if found is not None:
                return found
        return None

    def _indexed(self) -> tuple[dict[JsonPath, Position], dict[JsonPath, Position]]:
        if self._keys is None or self._values is None:
            self._keys, self._values = {}, {}
            node = None
            if self._text is not None:
                try:
                    node = yaml.compose(self._text, Loader=_StrictYamlLoader)
                except yaml.YAMLError:
                    node = None  # valid JSON that YAML cannot compose (rare): positions are unknown
            if node is not None:
                _index(node, (), self._keys, self._values)
        return self._keys, self._values


class _StrictYamlLoader(yaml.SafeLoader):
    """SafeLoader whose only booleans are true/false and which keeps dates as strings."""


_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_StrictYamlLoader.yaml_implicit_resolvers = {
    first: [
        (tag, _BOOL if tag == "tag:yaml.org,2002:bool" else regexp)
        for tag, regexp in resolvers
        if tag != "tag:yaml.org,2002:timestamp"
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse(text: str, *, suffix: str) -> Parsed:
    """Parse JSON (``.json``) or YAML (anything else) text; positions are found when first asked."""
    data = _parse_json(text) if suffix == ".json" else _parse_yaml(text)
    return Parsed(data, text)


def _parse_json(text: str) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise _DuplicateKey(key)
            result[key] = value
        return result

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as error:
        raise ParseError(f"invalid JSON: {error.msg}", error.lineno, error.colno) from None
    except _DuplicateKey as duplicate:
        line, column = _find_duplicate(text, duplicate.key)
        raise ParseError(f"duplicate key '{duplicate.key}'", line, column) from None


def _parse_yaml(text: str) -> Any:
    try:
        loader = _StrictYamlLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _reject_duplicate_keys(node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        reason = " ".join(part for part in (error.context, error.problem) if part)
        if mark is None:
            raise ParseError(f"invalid YAML: {reason}") from None
        raise ParseError(f"invalid YAML: {reason}", mark.line + 1, mark.column + 1) from None
    except yaml.YAMLError as error:
        raise ParseError(f"invalid YAML: {error}") from None


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _reject_duplicate_keys(node: yaml.Node) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                mark = key_node.start_mark
                raise ParseError(f"duplicate key '{key}'", mark.line + 1, mark.column + 1)
            seen.add(key)
            _reject_duplicate_keys(value_node)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _reject_duplicate_keys(item)


def _find_duplicate(text: str, key: str) -> tuple[int | None, int | None]:
    """The position of the second occurrence of ``"key":`` (best effort for JSON)."""
    matches = list(re.finditer(rf'"{re.escape(key)}"\s*:', text))
    if len(matches) < 2:
        return None, None
    offset = matches[1].start()
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _index(node: yaml.Node, path: JsonPath, keys: dict[JsonPath, Position], values: dict[JsonPath, Position]) -> None:
    values[path] = _position(node)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = path + (str(key_node.value),)
            keys[child] = _position(key_node)
            _index(value_node, child, keys, values)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index(item, path + (index,), keys, values)


def _position(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


def format_path(path: JsonPath) -> str:
    """``('tools', 0, 'server')`` as ``$.tools[0].server``."""
    text = "$"
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", part):
            text += f".{part}"
        else:
            text += f"[{json.dumps(part)}]"
    return text
