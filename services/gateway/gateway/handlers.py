"""Message consumers of the gateway.

- The reply queue of this instance (exclusive, auto-delete, no binding: the runner publishes to
  it through the default exchange): steps go to live listeners, outcomes to the run index (the
  one writer, see `RunService.record_outcome`) and then to the listeners. It is consumed by ONE
  loop, in delivery order (`consume_replies`):
  FastStream runs each delivery of a handler-subscriber as its own task, and those tasks can
  overtake each other, which would shuffle a run's streamed steps.
- The durable work queue of AgentRunFinished on the events exchange: the same outcome, for
  fire-and-forget runs and for runs whose gateway replica died (written once: the inbox claim
  of the run's outcome key arbitrates between the two paths).
"""

from __future__ import annotations

import asyncio
import logging
from faststream.rabbit import RabbitBroker, RabbitQueue
from faststream.rabbit.subscriber import RabbitSubscriber
from pydantic import ValidationError

from contracts import REPLY_QUEUE_PREFIX, AgentRunCompleted, AgentRunFailed, AgentRunFinished, AgentRunStep, queue_name
from servicekit.logs import log_fields
from servicekit.messaging import EVENTS, work_queue

from . import SERVICE
from .service.runs import RunService

logger = logging.getLogger("gateway.replies")

# The bootstrap provides the use cases with `broker.context.set_global(RUNS_KEY, ...)`. Handlers
# read it with `broker.context.get` rather than a `Context()` parameter: FastDepends resolves
# such a parameter in a worker thread, a thread hop per message on the hot path.
RUNS_KEY = "gateway_runs"


def reply_queue(instance_id: str) -> RabbitQueue:
    return RabbitQueue(REPLY_QUEUE_PREFIX + instance_id, durable=False, exclusive=True, auto_delete=True)


def register(broker: RabbitBroker, *, delivery_limit: int, instance_id: str) -> None:
    def runs() -> RunService:
        return broker.context.get(RUNS_KEY)

    # No handler: `consume_replies` iterates this subscriber in delivery order.
    broker.subscriber(
        reply_queue(instance_id),
        title="gateway.replies",
        description="AgentRunStep, then AgentRunFinished (or, from runners with legacy events on, AgentRunCompleted "
        "or AgentRunFailed), of the runs this instance accepted "
        "(header x-message-type names the contract)",
    )

    @broker.subscriber(work_queue(SERVICE, AgentRunFinished, delivery_limit=delivery_limit), EVENTS, no_reply=True)
    async def on_run_finished(msg: AgentRunFinished) -> None:
        """A run finished (any replica's): record it in the run index once."""
        await runs().record_outcome(msg, source="events")


# The queues of the outcome events AgentRunFinished replaced (deleted at start-up once drained).
RETIRED_QUEUES = tuple(queue_name(SERVICE, c) for c in (AgentRunCompleted, AgentRunFailed))


def reply_subscriber(broker: RabbitBroker) -> RabbitSubscriber:
    return next(s for s in broker.subscribers if s.queue.name.startswith(REPLY_QUEUE_PREFIX))


async def consume_replies(subscriber: RabbitSubscriber, runs: RunService) -> None:
    """Background task: keep `_consume_replies` running; a bug in one dispatch must not leave
    this instance deaf to every later reply."""
    while True:
        try:
            await _consume_replies(subscriber, runs)
        except Exception:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # shutting down: closing the consumer may fail
                raise
            logger.exception("reply consumer crashed; restarting it")
            await asyncio.sleep(0.5)


async def _consume_replies(subscriber: RabbitSubscriber, runs: RunService) -> None:
    """Dispatch the reply queue's messages one by one, in the order they came.

    Steps are handed over synchronously, so a run's steps reach its listeners in order. An
    outcome is recorded in a task of its own (a database write must not hold up other runs'
    steps); it wakes the listeners only after the write, i.e. after every earlier step.
    """
    in_flight: set[asyncio.Task] = set()

    def finished(task: asyncio.Task) -> None:
        in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The waiters were woken anyway; the durable events queue will retry the index.
            logger.warning("recording a run outcome from the reply queue failed", exc_info=task.exception())

    try:
        async for message in subscriber:
            await message.ack()  # a reply is worth nothing once this instance is gone
            kind = (message.headers or {}).get("x-message-type")
            try:
                body = await message.decode()
                if kind == "AgentRunStep":
                    runs.forward_step(AgentRunStep.model_validate(body))
                    continue
                contract = REPLY_OUTCOMES.get(kind or "")
                if contract is None:
                    raise ValueError(f"unexpected message type {kind!r}")
                outcome = contract.model_validate(body)
            except (ValidationError, ValueError) as exc:
                logger.error("dropping a reply that breaks the contract: %s", str(exc)[:300],
                             extra=log_fields(message_id=message.message_id, message_type=kind))
                continue
            task = asyncio.create_task(runs.record_outcome(outcome, source="reply"))
            in_flight.add(task)
            task.add_done_callback(finished)
    finally:
        for task in list(in_flight):
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)


REPLY_OUTCOMES = {c.__name__: c for c in (AgentRunFinished, AgentRunCompleted, AgentRunFailed)}
