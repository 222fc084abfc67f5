"""A subscription's rules as the embedded bus stores them, and how it matches a message against them.

The realm's subscription holds one rule per agent, each an OR of ``sys.Label = '…'`` and
``sys.Label LIKE '…%'`` terms. Evaluated one by one, ten thousand such rules cost hundreds of
milliseconds per message; held in memory as sets of labels they cost every process that routes a
megabyte of strings for its whole life, and a peak of several more while they are built. So when a
subscription is declared, each rule made only of label terms goes into ``bus_rule_labels``, an
index in the bus's own database (its exact labels, and its label prefixes); a message's label is
looked up there with one indexed query (the label itself, and its prefixes of the lengths the
index holds). Every other rule (correlation filters, SQL that is not only label terms) is kept in
the subscription's routing record and evaluated as written.

Both give the answer Service Bus gives: a label term is TRUE exactly when the label is that string
(or starts with that prefix), an OR of terms is TRUE when one of them is, and a message is copied
when any rule selects it.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from kernel.engine.sqlfilter import CorrelationRule, FilterableMessage, SqlRule, label_terms, parse, rule_matches

Rule = SqlRule | CorrelationRule

SCHEMA = (
    # whole = 1: the label itself; whole = 0: a prefix of it. Without rowid: the key is the row.
    """CREATE TABLE IF NOT EXISTS bus_rule_labels (
        entity_key TEXT NOT NULL,
        whole INTEGER NOT NULL,
        label TEXT NOT NULL,
        PRIMARY KEY (entity_key, whole, label)
    ) WITHOUT ROWID""",
)


def rules_json(rules: Sequence[Rule]) -> str:
    """The rules as stored: a JSON list, written one rule at a time. The realm's subscription has a
    rule per agent; a list of ten thousand dicts built only to be encoded would leave the allocator
    holding its memory long after (docs/performance.md, round 9)."""
    out = io.StringIO()
    out.write("[")
    for position, rule in enumerate(rules):
        if position:
            out.write(",")
        out.write(json.dumps(_item(rule), separators=(",", ":")))
    out.write("]")
    return out.getvalue()


def rules_tag(text: str) -> str:
    """A digest of stored rules: reading a subscription reads this, not its rules (600 KB for ten
    thousand agents), and a changed tag tells every connection to compile the rules again."""
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def rules_from_json(text: str) -> tuple[Rule, ...]:
    """Stored rules (``rules_json``) as rule objects, for diagnostics."""
    return tuple(_rule(item) for item in json.loads(text))


def index(conn: sqlite3.Connection, key: str, rules: Sequence[Rule]) -> str:
    """Put the label rules of subscription ``key`` into the label index (replacing what it held)
    and return its routing record: the other rules, and the prefix lengths the index holds. One
    rule at a time, so ten thousand rules are never all in memory as labels at once."""
    whole = False
    prefix_lengths: set[int] = set()
    others: list[dict[str, Any]] = []

    def rows() -> Iterator[tuple[str, int, str]]:
        nonlocal whole
        for rule in rules:
            terms = label_terms(rule.sql) if isinstance(rule, SqlRule) else None
            if terms is None:
                others.append(_item(rule))
                continue
            for is_whole, text in terms:
                if is_whole:
                    whole = True
                else:
                    prefix_lengths.add(len(text))
                yield key, int(is_whole), text

    conn.execute("DELETE FROM bus_rule_labels WHERE entity_key = ?", (key,))
    conn.executemany("INSERT OR IGNORE INTO bus_rule_labels (entity_key, whole, label) VALUES (?, ?, ?)", rows())
    return json.dumps({"whole": whole, "prefix_lengths": sorted(prefix_lengths), "others": others},
                      separators=(",", ":"))


@dataclass(frozen=True)
class Routing:
    """A subscription's rules compiled: whether the label index holds exact labels for it, the
    lengths of the prefixes it holds, and the rules evaluated as written."""

    key: str
    whole: bool
    prefix_lengths: tuple[int, ...]
    others: tuple[Callable[[FilterableMessage], bool], ...]

    @classmethod
    def compiled(cls, key: str, record: str) -> "Routing":
        """The routing record ``index`` returned, with its other rules parsed (once, here)."""
        found = json.loads(record)
        return cls(key, bool(found["whole"]), tuple(found["prefix_lengths"]),
                   tuple(_matcher(_rule(item)) for item in found["others"]))

    def matches(self, conn: sqlite3.Connection, message: FilterableMessage) -> bool:
        """Whether any rule selects ``message`` (label rules through the index on ``conn``)."""
        label = message.subject
        if isinstance(label, str):
            prefixes = [label[:length] for length in self.prefix_lengths if length <= len(label)]
            if (self.whole or prefixes) and conn.execute(_lookup(self.whole, len(prefixes)),
                                                         (self.key, label, *prefixes)).fetchone():
                return True
        return any(match(message) for match in self.others)


@functools.lru_cache(maxsize=64)
def _lookup(whole: bool, prefixes: int) -> str:
    """The index lookup for a label and ``prefixes`` of its prefixes: one search of the primary key
    each (an OR of the two kinds would make SQLite scan every label of the subscription)."""
    parts = ["SELECT 1 FROM bus_rule_labels WHERE entity_key = ?1 AND whole = 1 AND label = ?2"] if whole else []
    if prefixes:
        places = ", ".join(f"?{3 + n}" for n in range(prefixes))
        parts.append(f"SELECT 1 FROM bus_rule_labels WHERE entity_key = ?1 AND whole = 0 AND label IN ({places})")
    return " UNION ALL ".join(parts) + " LIMIT 1"


def _item(rule: Rule) -> dict[str, Any]:
    if isinstance(rule, SqlRule):
        return {"kind": "sql", "name": rule.name, "sql": rule.sql}
    if isinstance(rule, CorrelationRule):
        return {"kind": "correlation", **asdict(rule)}
    raise TypeError(f"rules must be SqlRule or CorrelationRule, got {type(rule).__name__}")


def _rule(item: dict[str, Any]) -> Rule:
    fields = {name: value for name, value in item.items() if name != "kind"}
    return SqlRule(**fields) if item["kind"] == "sql" else CorrelationRule(**fields)


def _matcher(rule: Rule) -> Callable[[FilterableMessage], bool]:
    if isinstance(rule, SqlRule):
        return parse(rule.sql).matches
    return lambda message: rule_matches(rule, message)
