"""Message subscribers of the gateway.

- The reply queue of this instance (exclusive, auto-delete, no binding: the runner publishes to
  it through the default exchange): steps go to live listeners, outcomes to the run index and
  then to the listeners. Acked on receipt: a reply is worth nothing once this instance is gone,
  and the durable queue below is what makes the index complete.
- Durable work queues on the events exchange for AgentRunCompleted / AgentRunFailed: they keep
  the run index right for fire-and-forget runs and for runs whose gateway replica died.
"""

from __future__ import annotations

from typing import Annotated, Any

from faststream import AckPolicy, Context
from faststream.rabbit import RabbitBroker, RabbitQueue
from faststream.rabbit.annotations import RabbitMessage

from contracts import REPLY_QUEUE_PREFIX, AgentRunCompleted, AgentRunFailed, AgentRunStep
from servicekit.messaging import EVENTS, PermanentError, work_queue

from . import SERVICE
from .service.runs import RunService

RUNS_KEY = "gateway.runs"
# Handler parameter; the bootstrap provides it with `broker.context.set_global(RUNS_KEY, ...)`.
RunsDep = Annotated[RunService, Context(RUNS_KEY)]


def reply_queue(instance_id: str) -> RabbitQueue:
    return RabbitQueue(REPLY_QUEUE_PREFIX + instance_id, durable=False, exclusive=True, auto_delete=True)


def register(broker: RabbitBroker, *, delivery_limit: int, instance_id: str) -> None:
    @broker.subscriber(reply_queue(instance_id), ack_policy=AckPolicy.ACK_FIRST, no_reply=True)
    async def on_reply(body: dict[str, Any], message: RabbitMessage, runs: RunsDep) -> None:
        """Steps and outcomes of the runs this instance accepted, dispatched by message type."""
        kind = (message.headers or {}).get("x-message-type") or body.get("envelope", {}).get("message_type")
        if kind == "AgentRunStep":
            runs.forward_step(AgentRunStep.model_validate(body))
        elif kind == "AgentRunCompleted":
            await runs.record_outcome(AgentRunCompleted.model_validate(body), source="reply")
        elif kind == "AgentRunFailed":
            await runs.record_outcome(AgentRunFailed.model_validate(body), source="reply")
        else:
            raise PermanentError(f"unexpected message type {kind!r} on the reply queue")

    @broker.subscriber(work_queue(SERVICE, AgentRunCompleted, delivery_limit=delivery_limit), EVENTS, no_reply=True)
    async def on_run_completed(msg: AgentRunCompleted, runs: RunsDep) -> None:
        """A run finished (any replica's): record it in the run index once."""
        await runs.record_outcome(msg, source="events")

    @broker.subscriber(work_queue(SERVICE, AgentRunFailed, delivery_limit=delivery_limit), EVENTS, no_reply=True)
    async def on_run_failed(msg: AgentRunFailed, runs: RunsDep) -> None:
        """A run failed (any replica's): record it in the run index once."""
        await runs.record_outcome(msg, source="events")
