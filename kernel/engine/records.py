"""JSON for the engine's own records: history events, queued messages, instance bookkeeping.

These are dicts the engine builds from plain JSON values (the app's payloads are strings inside
them, already encoded by the SDK), stored in SQLite and read back by the engine and by the SDK's
JSON parser. About 60 records of 60 KB are encoded per agent turn; the standard library's
``json.dumps`` builds a new encoder on every call and escapes every quote of the nested payloads
in Python-facing C code several times slower than ``orjson`` (measured: 0.9 -> 0.45 ms of CPU per
turn for the three store calls). Parsed, both texts give the same value; they differ only in how
non-ASCII characters are written (UTF-8 here, ``\\u`` escapes there).

What orjson refuses goes to the standard library, so nothing that encoded before fails now: a
lone surrogate (it can come with an exception's text), an integer beyond 64 bits, a dict key that
is not a string, and the types passed through (datetimes, dataclasses, subclasses of the built-in
types, on which the standard library raises or encodes as it did). Two differences remain, for
values the engine's records do not hold (they are strings, whole numbers, booleans and nulls, plus
the retry intervals of the SDK's retry options): orjson writes NaN and infinities as ``null``
(JSON has no such numbers), and encodes UUIDs and enums where the standard library raises.

``is_json`` checks the JSON text of a value the SDK's client sends to the Durable API (an
orchestration's input, an event, an entity operation's input), the same way.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def dumps(value: Any) -> str:
    """Compact JSON text of an engine record."""
    try:
        return orjson.dumps(value, option=_STRICT).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value, separators=(",", ":"))


def is_json(text: str) -> bool:
    """Whether ``text`` is JSON as the standard library reads it (NaN and infinities included).
    orjson checks first, several times faster; what it refuses the standard library decides."""
    try:
        orjson.loads(text)
        return True
    except orjson.JSONDecodeError:
        pass
    try:
        json.loads(text)
        return True
    except json.JSONDecodeError:
        return False
