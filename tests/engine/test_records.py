"""The engine's record JSON (kernel/engine/records.py): what it reads back is what it stored."""

from __future__ import annotations

import json

from kernel.engine.records import dumps


def test_a_record_reads_back_as_the_value_it_was_and_compact() -> None:
    record = {"EventType": 6, "EventId": -1, "TaskScheduledId": 3, "IsPlayed": True,
              "Input": json.dumps({"note": "café €", "nested": [1, "two", None]}),
              "Reason": "Activity function 'x' failed: OSError: bad name b'\\xff' -> 'x\udcffy'",
              "ParentInstance": None, "big": 2**70, "retry": {"first_ms": 1000.0, "backoff": 1.5}}
    text = dumps(record)
    assert json.loads(text) == record
    assert dumps({"a": [1, {"b": None, "c": "é"}]}) == '{"a":[1,{"b":null,"c":"é"}]}'  # compact, UTF-8


def test_what_the_fast_encoder_refuses_is_encoded_as_before() -> None:
    """A lone surrogate (exception text), a non-string key: the standard library's text, not an error."""
    for value in ({"Reason": "x\ud800y"}, {1: "a"}, {"n": 2**70}):
        assert dumps(value) == json.dumps(value, separators=(",", ":"))
