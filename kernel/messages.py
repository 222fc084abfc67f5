"""The one message envelope every Service Bus topic carries.

Apps talk to each other only through topics, so the envelope is the platform's wire contract: its
JSON Schema is published in ``schemas/envelope.schema.json`` beside the config schemas. The
envelope maps onto Service Bus message fields (id, subject, to, correlation id, reply-to) so that
topic filters can route on them without opening the body.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from typing_extensions import Annotated

TRACEPARENT_PATTERN = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"


def _new_id() -> str:
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Envelope(BaseModel):
    """An event, command or reply travelling between the apps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        default_factory=_new_id,
        description="Unique message id; also the Service Bus MessageId, so redelivery is idempotent.",
    )
    type: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,200}$")] = Field(
        description="What happened or is asked, such as 'finance.invoice.received'."
    )
    source: Annotated[str, StringConstraints(min_length=1, max_length=256)] = Field(
        description="Who sent it: an agent id, an app role, or an external system."
    )
    subject: str | None = Field(default=None, description="What the event is about, if anything.")
    to: str | None = Field(
        default=None,
        description="The agent it is addressed to, if any: its id, or 'namespace.id' outside the default namespace.",
    )
    namespace: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,62}$")] | None = Field(
        default=None,
        description="The tenant namespace a broadcast event belongs to (default when absent): only that namespace's "
        "subscribers receive it, unless a route grants more. Events agents send are in their sender's namespace.",
    )
    correlation_id: str | None = Field(
        default=None, description="Ties a conversation or a request and its reply together."
    )
    causation_id: str | None = Field(default=None, description="Id of the message that caused this.")
    reply_to: str | None = Field(default=None, description="Topic where a reply is expected.")
    traceparent: Annotated[str, StringConstraints(pattern=TRACEPARENT_PATTERN)] | None = Field(
        default=None, description="W3C trace context, so one trace follows an event across apps."
    )
    time: AwareDatetime = Field(default_factory=_now, description="When it was created (UTC).")
    data: Any = Field(default=None, description="The payload: any JSON value.")

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> "Envelope":
        return cls.model_validate_json(raw)


def describe_invalid(error: Exception) -> str:
    """One line naming what is wrong with an envelope and where (for dead-letter reasons and API errors)."""
    if isinstance(error, ValidationError):
        problems = []
        for item in error.errors()[:5]:
            where = ".".join(str(part) for part in item["loc"]) or "(body)"
            if item["type"] == "json_invalid":
                problems.append(f"not valid JSON ({item.get('ctx', {}).get('error', item['msg'])})")
            elif item["type"] == "missing":
                problems.append(f"missing required field '{where}'")
            elif item["type"] == "extra_forbidden":
                problems.append(f"unknown field '{where}'")
            else:
                problems.append(f"'{where}': {item['msg']}")
        more = f" (and {error.error_count() - 5} more)" if error.error_count() > 5 else ""
        return "; ".join(problems) + more
    return str(error)


