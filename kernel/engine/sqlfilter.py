"""Azure Service Bus subscription rule filters: the SQL filter language and correlation filters.

The embedded bus decides fan-out with these, so a rule must mean locally what it means in Azure.
The grammar and semantics follow the Service Bus "SQL filter syntax" reference:

- property names are case-insensitive; ``sys.`` names a system property (an unknown one is refused
  when the rule is parsed, Azure refuses it too), ``user.`` or no scope an application property,
  ``[delimited]`` and ``"quoted"`` names allow any characters;
- a missing application property is *unknown*, and unknown follows SQL three-valued logic: a rule
  matches only when its predicate is TRUE;
- operators bind like C#: long and double promote, ``+`` concatenates two strings, integer ``/``
  truncates. An operation C# has no binding for (``'a' = 1``, ``'a' < 'b'``, ``1 / 0``) is a
  filter evaluation error in Azure, so the whole rule does not match the message;
- string comparison and LIKE are ordinal (case-sensitive), like .NET string equality.

Rule actions (``SET``/``REMOVE``) and ``newid()`` are not supported: they are refused when parsed.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

Value = str | int | float | bool | None
"""A filter value; ``None`` is SQL NULL, which is also how *unknown* is represented."""

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

_KEYWORDS = frozenset(
    {"and", "or", "not", "in", "like", "escape", "is", "null", "true", "false", "exists"}
)

# sys.<name> -> attribute of the message. Label is the classic name of what AMQP calls Subject.
SYSTEM_PROPERTIES: Mapping[str, str] = {
    "messageid": "message_id",
    "correlationid": "correlation_id",
    "to": "to",
    "replyto": "reply_to",
    "label": "subject",
    "subject": "subject",
    "sessionid": "session_id",
    "contenttype": "content_type",
}
_SYSTEM_NAMES = "sys.MessageId, sys.CorrelationId, sys.To, sys.ReplyTo, sys.Label, sys.Subject, " \
    "sys.SessionId, sys.ContentType"


class SqlFilterError(ValueError):
    """A filter expression that is not valid Service Bus SQL; names the column and what was expected."""

    def __init__(self, problem: str, sql: str, column: int) -> None:
        super().__init__(f"{problem} at column {column} in: {sql}")
        self.problem = problem
        self.sql = sql
        self.column = column


class _EvaluationError(Exception):
    """An operation C# cannot bind; Azure fails the rule for this message, so it does not match."""


class FilterableMessage(Protocol):
    """What a filter reads from a message: both the bus's outgoing and received messages fit."""

    @property
    def message_id(self) -> str | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def to(self) -> str | None: ...
    @property
    def reply_to(self) -> str | None: ...
    @property
    def subject(self) -> str | None: ...
    @property
    def session_id(self) -> str | None: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def application_properties(self) -> Mapping[str, Any]: ...


class _View:
    """A message prepared for evaluation: application properties indexed case-insensitively."""

    def __init__(self, message: FilterableMessage) -> None:
        self.message = message
        self.properties = {str(k).lower(): v for k, v in message.application_properties.items()}

    def system(self, attribute: str) -> Value:
        value: Value = getattr(self.message, attribute)
        return value

    def has_user(self, name: str) -> bool:
        return name.lower() in self.properties

    def user(self, name: str) -> Value:
        value: Value = self.properties.get(name.lower())
        return value


# ---------------------------------------------------------------------------------------------
# Evaluation helpers (C# binding semantics)
# ---------------------------------------------------------------------------------------------


def _is_number(value: Value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _wrap_int64(value: int) -> int:
    """Long arithmetic in C# is unchecked: it wraps instead of growing."""
    return (value - _INT64_MIN) % 2**64 + _INT64_MIN


def _type_name(value: Value) -> str:
    return {bool: "bool", int: "long", float: "double", str: "string"}[type(value)]


_ORDERING: Mapping[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def _compare(op: str, left: Value, right: Value) -> bool | None:
    if left is None or right is None:
        return None
    both_numbers = _is_number(left) and _is_number(right)
    if not both_numbers:
        if type(left) is not type(right):
            raise _EvaluationError(f"cannot compare {_type_name(left)} with {_type_name(right)}")
        if op not in ("=", "<>", "!="):
            raise _EvaluationError(f"operator {op} is not defined for {_type_name(left)}")
    return _ORDERING[op](left, right)


def _divide(left: int | float, right: int | float) -> int | float:
    if isinstance(left, int) and isinstance(right, int):
        if right == 0:
            raise _EvaluationError("integer division by zero")
        quotient = abs(left) // abs(right)
        return _wrap_int64(quotient if (left < 0) == (right < 0) else -quotient)
    if right == 0:
        if left == 0 or math.isnan(left):
            return math.nan
        return math.copysign(math.inf, left) * math.copysign(1.0, right)
    return left / right


def _remainder(left: int | float, right: int | float) -> int | float:
    if isinstance(left, int) and isinstance(right, int):
        if right == 0:
            raise _EvaluationError("integer division by zero")
        return left - right * int(_divide(left, right))
    if right == 0:
        return math.nan
    return math.fmod(left, right)


def _arithmetic(op: str, left: Value, right: Value) -> Value:
    if left is None or right is None:
        return None
    if op == "+" and isinstance(left, str) and isinstance(right, str):
        return left + right
    if not (_is_number(left) and _is_number(right)):
        raise _EvaluationError(f"operator {op} is not defined for {_type_name(left)} and {_type_name(right)}")
    assert isinstance(left, (int, float)) and isinstance(right, (int, float))
    if op == "/":
        return _divide(left, right)
    if op == "%":
        return _remainder(left, right)
    result = {"+": operator.add, "-": operator.sub, "*": operator.mul}[op](left, right)
    return _wrap_int64(result) if isinstance(result, int) else result


@lru_cache(maxsize=256)
def _like_regex(pattern: str, escape: str | None) -> re.Pattern[str]:
    parts: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if escape is not None and char == escape:
            escaped = next(chars, None)
            if escaped is None:
                raise _EvaluationError("LIKE pattern ends with its escape character")
            parts.append(re.escape(escaped))
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


def _truth(value: Value) -> bool | None:
    """Conditions only ever produce TRUE, FALSE or unknown; narrow the type accordingly."""
    return value if isinstance(value, bool) else None


def _and(left: bool | None, right: bool | None) -> bool | None:
    if left is False or right is False:
        return False
    return None if left is None or right is None else True


def _or(left: bool | None, right: bool | None) -> bool | None:
    if left is True or right is True:
        return True
    return None if left is None or right is None else False


# ---------------------------------------------------------------------------------------------
# Syntax tree
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    column: int

    is_predicate = False

    def evaluate(self, view: _View) -> Value:  # every concrete node overrides this
        raise TypeError(f"{type(self).__name__} is an abstract filter node")


@dataclass(frozen=True)
class _Constant(_Node):
    value: Value

    def evaluate(self, view: _View) -> Value:
        return self.value


@dataclass(frozen=True)
class _Property(_Node):
    name: str
    system_attribute: str | None  # set for sys. properties

    def evaluate(self, view: _View) -> Value:
        if self.system_attribute is not None:
            return view.system(self.system_attribute)
        return view.user(self.name)

    def exists(self, view: _View) -> bool:
        if self.system_attribute is not None:
            return view.system(self.system_attribute) is not None
        return view.has_user(self.name)


@dataclass(frozen=True)
class _PropertyFunction(_Node):
    """``property(name)`` / ``p(name)``: a property named by a string computed at evaluation."""

    argument: _Node

    def evaluate(self, view: _View) -> Value:
        name = self.argument.evaluate(view)
        if name is None:
            return None
        if not isinstance(name, str):
            raise _EvaluationError("property() needs a string name")
        scope, dot, rest = name.partition(".")
        if dot and scope.lower() == "sys":
            attribute = SYSTEM_PROPERTIES.get(rest.lower())
            if attribute is None:
                raise _EvaluationError(f"unknown system property {name!r}")
            return view.system(attribute)
        return view.user(rest if dot and scope.lower() == "user" else name)


@dataclass(frozen=True)
class _Negate(_Node):
    operand: _Node
    sign: str

    def evaluate(self, view: _View) -> Value:
        value = self.operand.evaluate(view)
        if value is None:
            return None
        if not _is_number(value):
            raise _EvaluationError(f"unary {self.sign} is not defined for {_type_name(value)}")
        assert isinstance(value, (int, float))
        if self.sign == "+":
            return value
        return _wrap_int64(-value) if isinstance(value, int) else -value


@dataclass(frozen=True)
class _Arithmetic(_Node):
    op: str
    left: _Node
    right: _Node

    def evaluate(self, view: _View) -> Value:
        return _arithmetic(self.op, self.left.evaluate(view), self.right.evaluate(view))


@dataclass(frozen=True)
class _Comparison(_Node):
    op: str
    left: _Node
    right: _Node

    is_predicate = True

    def evaluate(self, view: _View) -> Value:
        return _compare(self.op, self.left.evaluate(view), self.right.evaluate(view))


@dataclass(frozen=True)
class _IsNull(_Node):
    operand: _Property
    negated: bool

    is_predicate = True

    def evaluate(self, view: _View) -> Value:
        return (self.operand.evaluate(view) is None) != self.negated


@dataclass(frozen=True)
class _Exists(_Node):
    operand: _Property

    is_predicate = True

    def evaluate(self, view: _View) -> Value:
        return self.operand.exists(view)


@dataclass(frozen=True)
class _In(_Node):
    operand: _Node
    items: tuple[_Node, ...]
    negated: bool

    is_predicate = True

    def evaluate(self, view: _View) -> Value:
        value = self.operand.evaluate(view)
        if value is None:
            return None
        found: bool | None = False
        for item in self.items:
            found = _or(found, _compare("=", value, item.evaluate(view)))
            if found:
                break
        return None if found is None else found != self.negated


@dataclass(frozen=True)
class _Like(_Node):
    operand: _Node
    pattern: _Node
    escape: _Node | None
    negated: bool

    is_predicate = True

    def evaluate(self, view: _View) -> Value:
        value = self.operand.evaluate(view)
        pattern = self.pattern.evaluate(view)
        escape = self.escape.evaluate(view) if self.escape is not None else None
        if value is None or pattern is None or (self.escape is not None and escape is None):
            return None
        if not isinstance(value, str) or not isinstance(pattern, str):
            raise _EvaluationError("LIKE needs string operands")
        if escape is not None and (not isinstance(escape, str) or len(escape) != 1):
            raise _EvaluationError("ESCAPE needs a string of length 1")
        matched = _like_regex(pattern, escape).fullmatch(value) is not None
        return matched != self.negated


@dataclass(frozen=True)
class _Not(_Node):
    operand: _Node

    is_predicate = True

    def evaluate(self, view: _View) -> Value:
        value = self.operand.evaluate(view)
        return None if value is None else not value


@dataclass(frozen=True)
class _Logical(_Node):
    op: str  # "and" | "or"
    left: _Node
    right: _Node

    is_predicate = True

    def evaluate(self, view: _View) -> Value:
        left = _truth(self.left.evaluate(view))
        # Once the left side decides the result the right side is not evaluated, so an operation
        # that cannot bind there does not fail a rule that already has its answer.
        if self.op == "and":
            return False if left is False else _and(left, _truth(self.right.evaluate(view)))
        return True if left is True else _or(left, _truth(self.right.evaluate(view)))


# ---------------------------------------------------------------------------------------------
# Tokenizer and recursive-descent parser
# ---------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_OPERATORS = ("<>", "!=", ">=", "<=", "=", "<", ">", "+", "-", "*", "/", "%", "(", ")", ",", ".")


@dataclass(frozen=True)
class _Token:
    kind: str  # "name" | "delimited" | "string" | "integer" | "decimal" | "op" | "end"
    text: str
    column: int

    def is_keyword(self, *words: str) -> bool:
        return self.kind == "name" and self.text.lower() in words

    def describe(self) -> str:
        if self.kind == "end":
            return "end of filter"
        if self.kind == "string":
            return f"string '{self.text}'"
        return f"'{self.text}'"


def _read_quoted(sql: str, start: int, close: str, what: str) -> tuple[str, int]:
    """Read a literal opened at ``start`` whose closing character is doubled to escape it."""
    chars: list[str] = []
    i = start + 1
    while i < len(sql):
        if sql[i] == close:
            if sql[i + 1 : i + 2] == close:
                chars.append(close)
                i += 2
                continue
            return "".join(chars), i + 1
        chars.append(sql[i])
        i += 1
    raise SqlFilterError(f"unterminated {what} (expected closing {close})", sql, start + 1)


def _tokenize(sql: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(sql):
        char = sql[i]
        if char.isspace():
            i += 1
            continue
        column = i + 1
        number = _NUMBER.match(sql, i) if char.isdigit() or char == "." else None
        if number is not None:
            kind = "integer" if number.group(0).isdigit() else "decimal"
            tokens.append(_Token(kind, number.group(0), column))
            i = number.end()
        elif char.isalpha():
            end = i + 1
            while end < len(sql) and (sql[end].isalnum() or sql[end] == "_"):
                end += 1
            tokens.append(_Token("name", sql[i:end], column))
            i = end
        elif char in "'[\"":
            close, kind, what = {
                "'": ("'", "string", "string constant"),
                "[": ("]", "delimited", "delimited identifier"),
                '"': ('"', "delimited", "quoted identifier"),
            }[char]
            text, i = _read_quoted(sql, i, close, what)
            tokens.append(_Token(kind, text, column))
        else:
            symbol = next((op for op in _OPERATORS if sql.startswith(op, i)), None)
            if symbol is None:
                raise SqlFilterError(f"unexpected character {char!r}", sql, column)
            tokens.append(_Token("op", symbol, column))
            i += len(symbol)
    tokens.append(_Token("end", "", len(sql) + 1))
    return tokens


class _Parser:
    """Precedence, loosest first: OR, AND, NOT, comparison/IN/LIKE/IS, + -, * / %, unary, primary."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.tokens = _tokenize(sql)
        self.position = 0

    # token helpers --------------------------------------------------------------------------

    @property
    def current(self) -> _Token:
        return self.tokens[self.position]

    def _peek(self, offset: int = 1) -> _Token:
        return self.tokens[min(self.position + offset, len(self.tokens) - 1)]

    def _advance(self) -> _Token:
        token = self.current
        self.position += 1
        return token

    def _at_op(self, *symbols: str) -> bool:
        return self.current.kind == "op" and self.current.text in symbols

    def _error(self, expected: str, token: _Token | None = None) -> SqlFilterError:
        token = token or self.current
        return SqlFilterError(f"expected {expected}, found {token.describe()}", self.sql, token.column)

    def _expect_op(self, symbol: str) -> _Token:
        if not self._at_op(symbol):
            raise self._error(f"'{symbol}'")
        return self._advance()

    def _expect_keyword(self, word: str) -> None:
        if not self.current.is_keyword(word):
            raise self._error(word.upper())
        self._advance()

    def _require(self, node: _Node, predicate: bool) -> _Node:
        if node.is_predicate != predicate:
            wanted = "a condition (comparison, IN, LIKE, IS NULL or EXISTS)" if predicate else "a value"
            found = "a condition" if node.is_predicate else "a value"
            raise SqlFilterError(f"expected {wanted}, found {found}", self.sql, node.column)
        return node

    # grammar --------------------------------------------------------------------------------

    def parse(self) -> _Node:
        if self.current.kind == "end":
            raise self._error("a filter expression")
        root = self._or()
        if not root.is_predicate:
            raise self._error("a comparison operator, IN, LIKE or IS")
        if self.current.kind != "end":
            raise self._error("AND, OR or end of filter")
        return root

    def _or(self) -> _Node:
        left = self._and()
        while self.current.is_keyword("or"):
            self._advance()
            right = self._and()
            left = _Logical(left.column, "or", self._require(left, True), self._require(right, True))
        return left

    def _and(self) -> _Node:
        left = self._not()
        while self.current.is_keyword("and"):
            self._advance()
            right = self._not()
            left = _Logical(left.column, "and", self._require(left, True), self._require(right, True))
        return left

    def _not(self) -> _Node:
        if self.current.is_keyword("not"):
            column = self._advance().column
            return _Not(column, self._require(self._not(), True))
        return self._condition()

    def _condition(self) -> _Node:
        if self.current.is_keyword("exists"):
            column = self._advance().column
            self._expect_op("(")
            operand = self._property_operand("a property name inside EXISTS( )")
            self._expect_op(")")
            return _Exists(column, operand)
        left = self._additive()
        if left.is_predicate:
            return left
        token = self.current
        if token.kind == "op" and token.text in _ORDERING:
            self._advance()
            right = self._require(self._additive(), False)
            return _Comparison(left.column, token.text, left, right)
        if token.is_keyword("is"):
            return self._is_null(left)
        negated = token.is_keyword("not") and self._peek().is_keyword("in", "like")
        if negated:
            self._advance()
        if self.current.is_keyword("in"):
            return self._in(left, negated)
        if self.current.is_keyword("like"):
            return self._like(left, negated)
        return left  # a bare value: only valid inside arithmetic; callers reject it as a condition

    def _is_null(self, left: _Node) -> _Node:
        if not isinstance(left, _Property):
            raise SqlFilterError("IS [NOT] NULL applies to a property only", self.sql, left.column)
        self._advance()
        negated = self.current.is_keyword("not")
        if negated:
            self._advance()
        self._expect_keyword("null")
        return _IsNull(left.column, left, negated)

    def _in(self, left: _Node, negated: bool) -> _Node:
        self._advance()
        self._expect_op("(")
        items = [self._require(self._additive(), False)]
        while self._at_op(","):
            self._advance()
            items.append(self._require(self._additive(), False))
        if not self._at_op(")"):
            raise self._error("',' or ')'")
        self._advance()
        return _In(left.column, left, tuple(items), negated)

    def _like(self, left: _Node, negated: bool) -> _Node:
        self._advance()
        pattern = self._require(self._additive(), False)
        escape = None
        if self.current.is_keyword("escape"):
            self._advance()
            escape = self._require(self._additive(), False)
        return _Like(left.column, left, pattern, escape, negated)

    def _additive(self) -> _Node:
        left = self._multiplicative()
        while self._at_op("+", "-"):
            op = self._advance().text
            right = self._multiplicative()
            left = _Arithmetic(left.column, op, self._require(left, False), self._require(right, False))
        return left

    def _multiplicative(self) -> _Node:
        left = self._unary()
        while self._at_op("*", "/", "%"):
            op = self._advance().text
            right = self._unary()
            left = _Arithmetic(left.column, op, self._require(left, False), self._require(right, False))
        return left

    def _unary(self) -> _Node:
        if self._at_op("+", "-"):
            token = self._advance()
            return _Negate(token.column, self._require(self._unary(), False), token.text)
        return self._primary()

    def _primary(self) -> _Node:
        token = self.current
        if self._at_op("("):
            self._advance()
            inner = self._or()
            self._expect_op(")")
            return inner
        if token.kind == "string":
            self._advance()
            return _Constant(token.column, token.text)
        if token.kind in ("integer", "decimal"):
            self._advance()
            return _Constant(token.column, self._number(token))
        if token.is_keyword("true", "false", "null"):
            self._advance()
            return _Constant(token.column, {"true": True, "false": False, "null": None}[token.text.lower()])
        if token.kind == "name" and token.text.lower() in ("property", "p") and self._peek().kind == "op" and self._peek().text == "(":
            self._advance()
            self._advance()
            argument = self._require(self._additive(), False)
            self._expect_op(")")
            return _PropertyFunction(token.column, argument)
        if token.kind in ("name", "delimited"):
            return self._property()
        raise self._error("a value (constant, property or parenthesized expression)")

    def _number(self, token: _Token) -> int | float:
        if token.kind == "decimal":
            return float(token.text)
        value = int(token.text)
        if value > _INT64_MAX:
            raise SqlFilterError(f"integer constant {token.text} is out of range for a long", self.sql, token.column)
        return value

    def _property_operand(self, expected: str) -> _Property:
        if self.current.kind not in ("name", "delimited"):
            raise self._error(expected)
        return self._property()

    def _property(self) -> _Property:
        first = self._advance()
        scope = None
        if first.kind == "name" and first.text.lower() in ("sys", "user") and self._at_op("."):
            self._advance()
            scope = first.text.lower()
            if self.current.kind not in ("name", "delimited"):
                raise self._error(f"a property name after '{first.text}.'")
            name_token = self._advance()
        else:
            name_token = first
        if name_token.kind == "name" and name_token.text.lower() in _KEYWORDS:
            raise SqlFilterError(
                f"'{name_token.text}' is a reserved keyword; write [{name_token.text}] to use it as a property name",
                self.sql,
                name_token.column,
            )
        if scope != "sys":
            return _Property(first.column, name_token.text, None)
        attribute = SYSTEM_PROPERTIES.get(name_token.text.lower())
        if attribute is None:
            raise SqlFilterError(
                f"unknown system property 'sys.{name_token.text}' (supported: {_SYSTEM_NAMES})",
                self.sql,
                name_token.column,
            )
        return _Property(first.column, name_token.text, attribute)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Predicate:
    """A parsed SQL filter; parse once, then call :meth:`matches` per message."""

    sql: str
    _root: _Node = field(repr=False, compare=False)

    def matches(self, message: FilterableMessage) -> bool:
        """True only when the filter evaluates to TRUE: unknown and evaluation errors do not match."""
        try:
            return self._root.evaluate(_View(message)) is True
        except _EvaluationError:
            return False


def parse(sql: str) -> Predicate:
    """Parse a Service Bus SQL filter expression, raising :class:`SqlFilterError` when invalid."""
    if not isinstance(sql, str):
        raise TypeError(f"a SQL filter must be a string, got {type(sql).__name__}")
    return Predicate(sql, _Parser(sql).parse())


_parse_cached = lru_cache(maxsize=1024)(parse)


@dataclass(frozen=True)
class SqlRule:
    """A rule with a SQL filter; constructing it parses the expression, so bad rules fail early."""

    name: str
    sql: str

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a rule needs a name")
        parse(self.sql)

    @classmethod
    def unchecked(cls, name: str, sql: str) -> "SqlRule":
        """The rule without parsing its expression yet: for a subscription's rules as a topology
        declares them, which the bus checks (``check``) only when they differ from the rules it
        holds, which it checked when they were declared (ten thousand agents' rules at every
        config change otherwise)."""
        rule = object.__new__(cls)
        object.__setattr__(rule, "name", name)
        object.__setattr__(rule, "sql", sql)
        return rule

    def check(self) -> None:
        """Raise what constructing the rule raises when it is not a valid rule."""
        self.__post_init__()


_CORRELATION_FIELDS = ("correlation_id", "message_id", "to", "reply_to", "subject", "session_id", "content_type")


@dataclass(frozen=True)
class CorrelationRule:
    """A rule with a correlation filter: every property it sets must equal the message's."""

    name: str
    correlation_id: str | None = None
    message_id: str | None = None
    to: str | None = None
    reply_to: str | None = None
    subject: str | None = None
    session_id: str | None = None
    content_type: str | None = None
    application_properties: dict[str, Value] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a rule needs a name")
        if not self.application_properties and all(getattr(self, f) is None for f in _CORRELATION_FIELDS):
            raise ValueError(f"correlation rule {self.name!r} sets no property; Service Bus requires at least one")


def _correlation_equal(actual: Value, expected: Value) -> bool:
    if _is_number(actual) and _is_number(expected):
        return actual == expected
    return type(actual) is type(expected) and actual == expected


def _correlation_matches(rule: CorrelationRule, message: FilterableMessage) -> bool:
    for name in _CORRELATION_FIELDS:
        expected = getattr(rule, name)
        if expected is not None and getattr(message, name) != expected:
            return False
    if not rule.application_properties:
        return True
    view = _View(message)
    return all(
        view.has_user(key) and _correlation_equal(view.user(key), value)
        for key, value in rule.application_properties.items()
    )


def rule_matches(rule: SqlRule | CorrelationRule, message: FilterableMessage) -> bool:
    """Whether ``rule``, on its own, selects ``message``: the rule-by-rule meaning the bus's label
    index must give (kernel/engine/bus_rules.py)."""
    if isinstance(rule, SqlRule):
        return _parse_cached(rule.sql).matches(message)
    return _correlation_matches(rule, message)


def label_terms(sql: str) -> list[tuple[bool, str]] | None:
    """A SQL filter made only of label terms, as (True, label) for each ``sys.Label = 'label'`` and
    (False, prefix) for each ``sys.Label LIKE 'prefix%'``; None for any other filter. The bus holds
    such rules in an index instead of evaluating them one by one (kernel/engine/bus_rules.py)."""
    return _label_terms(parse(sql)._root)


def _label_terms(node: _Node) -> list[tuple[bool, str]] | None:
    """``node`` as label terms — (True, label) for ``sys.Label = 'label'``, (False, prefix) for
    ``sys.Label LIKE 'prefix%'`` — when it is an OR of only such terms; otherwise None."""
    if isinstance(node, _Logical):
        if node.op != "or":
            return None
        left, right = _label_terms(node.left), _label_terms(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, _Comparison) and node.op == "=":
        for side, other in ((node.left, node.right), (node.right, node.left)):
            if _is_label(side) and isinstance(other, _Constant) and isinstance(other.value, str):
                return [(True, other.value)]
        return None
    if isinstance(node, _Like) and not node.negated and _is_label(node.operand) \
            and isinstance(node.pattern, _Constant) and isinstance(node.pattern.value, str):
        escape: str | None = None
        if node.escape is not None:
            if not (isinstance(node.escape, _Constant) and isinstance(node.escape.value, str)
                    and len(node.escape.value) == 1):
                return None
            escape = node.escape.value
        literal = _like_literal(node.pattern.value, escape)
        return None if literal is None else [literal]
    return None


def _is_label(node: _Node) -> bool:
    return isinstance(node, _Property) and node.system_attribute == "subject"


def _like_literal(pattern: str, escape: str | None) -> tuple[bool, str] | None:
    """A LIKE pattern without wildcards as (True, text), one whose only wildcard is a final ``%``
    as (False, prefix); None for anything else (evaluated as written)."""
    chars: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if escape is not None and char == escape:
            if index + 1 == len(pattern):
                return None  # an evaluation error: left to the evaluator
            chars.append(pattern[index + 1])
            index += 2
            continue
        if char == "%" and index == len(pattern) - 1:
            return False, "".join(chars)
        if char in "%_":
            return None
        chars.append(char)
        index += 1
    return True, "".join(chars)
