"""The envelope every message carries, and the base class of every contract."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field

# Namespace for deterministic ids: the same (kind, key) always gives the same message id,
# so a retried publish is recognised by the consumer's inbox.
_ID_NAMESPACE = uuid.UUID("6f1d1c1e-3b1a-4c55-9a57-0e6f3c1d2a10")


def deterministic_id(kind: str, *keys: object) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, "/".join([kind, *map(str, keys)])))


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    message_id: str
    correlation_id: str = Field(description="The run or job this message belongs to")
    causation_id: str | None = Field(default=None, description="message_id of the cause")
    occurred_at: datetime = Field(default_factory=utcnow)
    message_type: str
    schema_version: int = 1
    traceparent: str | None = Field(default=None, description="W3C trace context")


class Contract(BaseModel):
    """Base of every message body. Subclasses set `routing_key` (domain.event.vN)."""

    model_config = ConfigDict(extra="ignore")

    routing_key: ClassVar[str]
    schema_version: ClassVar[int] = 1
    # False for a notification that may have no subscriber (yet): it is published without the
    # `mandatory` flag, so its publish (and the outbox behind it) does not fail for want of a queue.
    requires_subscriber: ClassVar[bool] = True

    envelope: Envelope

    @classmethod
    def create(
        cls,
        *,
        correlation_id: str,
        message_id: str | None = None,
        causation: Contract | None = None,
        **fields: object,
    ) -> Self:
        envelope = Envelope(
            message_id=message_id or new_id(),
            correlation_id=correlation_id,
            causation_id=causation.envelope.message_id if causation else None,
            message_type=cls.__name__,
            schema_version=cls.schema_version,
            traceparent=causation.envelope.traceparent if causation else None,
        )
        return cls(envelope=envelope, **fields)
