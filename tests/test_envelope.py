from __future__ import annotations

import pytest
from pydantic import ValidationError

from kernel.messages import Envelope


def test_round_trips_through_json() -> None:
    envelope = Envelope(
        type="finance.invoice.received",
        source="erp",
        to="cfo",
        correlation_id="c1",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        data={"amount": 1200, "currency": "EUR"},
    )
    again = Envelope.from_json(envelope.to_json())
    assert again == envelope
    assert len(again.id) == 32 and again.time.tzinfo is not None


@pytest.mark.parametrize(
    "raw, field",
    [
        ('{"source": "erp"}', "type"),
        ('{"type": "a", "source": "erp", "traceparent": "nope"}', "traceparent"),
        ('{"type": "a", "source": "erp", "time": "2026-01-01T00:00:00"}', "time"),
        ('{"type": "a", "source": "erp", "extra": 1}', "extra"),
        ('{"type": "a b", "source": "erp"}', "type"),
    ],
)
def test_malformed_envelopes_are_refused_naming_the_field(raw: str, field: str) -> None:
    with pytest.raises(ValidationError) as error:
        Envelope.from_json(raw)
    assert field in str(error.value)


def test_not_json_at_all_is_refused() -> None:
    with pytest.raises(ValidationError):
        Envelope.from_json(b"\xff not json")
