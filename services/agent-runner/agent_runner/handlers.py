"""Message subscribers: each takes its contract and calls one use case (from the broker's
context, set by the composition root)."""

from __future__ import annotations

import logging

from faststream.rabbit import RabbitBroker, RabbitQueue

from contracts import (
    DEAD_LETTER_EXCHANGE,
    REPLY_QUEUE_PREFIX,
    AgentRunCancelRequested,
    AgentRunCompleted,
    AgentRunFailed,
    AgentRunFinished,
    AgentRunRequested,
    AgentRunStep,
    InteractionLogged,
    ModelDeployed,
    queue_name,
)
from servicekit.logs import log_fields
from servicekit.messaging import EVENTS, work_queue

from . import SERVICE
from .service import RunAgent

logger = logging.getLogger("agent_runner.handlers")

# The composition root provides the use cases with `broker.context.set_global(KEY, ...)`. The
# handlers read them (and the delivery) with `broker.context.get...` rather than through
# `Context()` parameters: FastDepends resolves such parameters in a worker thread, a thread hop
# (and a task group) per message on the hot path.
RUN_AGENT_KEY = "agent_runner_run_agent"
DEPLOYMENTS_KEY = "agent_runner_deployments"

# Where a `model.deployed` that breaks the contract is dead-lettered: one durable DLQ for the
# per-instance queues of every replica (they come and go with their process).
DEPLOYMENTS_DLQ_KEY = queue_name(SERVICE, ModelDeployed)
# Queues of earlier versions that nothing consumes any more, deleted at start-up when unused:
# the shared durable `model.deployed` work queue of the replicas before per-instance queues.
RETIRED_QUEUES = (DEPLOYMENTS_DLQ_KEY,)


def deployments_queue(instance_id: str) -> RabbitQueue:
    """This instance's own queue for `model.deployed` (decision 0011): every replica reloads.
    Exclusive and auto-delete: it lives as long as the process's connection."""
    return RabbitQueue(
        f"{DEPLOYMENTS_DLQ_KEY}.{instance_id}",
        durable=False,
        exclusive=True,
        auto_delete=True,
        routing_key=ModelDeployed.routing_key,
        arguments={"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE, "x-dead-letter-routing-key": DEPLOYMENTS_DLQ_KEY},
    )


def cancel_queue(instance_id: str) -> RabbitQueue:
    """This instance's own queue for `agent.run.cancel` (a notification to every runner: only the one
    running the run acts). Exclusive and auto-delete, like the deployments queue; nothing to
    dead-letter (a cancel that cannot be read changes nothing)."""
    return RabbitQueue(f"{SERVICE}.{AgentRunCancelRequested.routing_key}.{instance_id}", durable=False,
                       exclusive=True, auto_delete=True, routing_key=AgentRunCancelRequested.routing_key)


def register(broker: RabbitBroker, *, delivery_limit: int, instance_id: str = "INSTANCE_ID") -> None:
    context = broker.context

    @broker.subscriber(work_queue(SERVICE, AgentRunRequested, delivery_limit=delivery_limit), EVENTS, no_reply=True)
    async def on_run_requested(request: AgentRunRequested) -> None:
        """Execute the run, streaming its steps to `reply_to`, and record it exactly once."""
        run_agent: RunAgent = context.get(RUN_AGENT_KEY)
        await run_agent(request, attempt=delivery_attempt(context.get_local("message").headers))

    @broker.subscriber(deployments_queue(instance_id), EVENTS, no_reply=True)
    async def on_model_deployed(event: ModelDeployed) -> None:
        """Serve the deployed model version: load, warm and swap it in (in the background)."""
        await context.get(DEPLOYMENTS_KEY)(event)

    @broker.subscriber(cancel_queue(instance_id), EVENTS, no_reply=True)
    async def on_run_cancel(msg: AgentRunCancelRequested) -> None:
        """Stop the run if this instance is running it (its requester is gone)."""
        run_agent: RunAgent = context.get(RUN_AGENT_KEY)
        if run_agent.cancel(msg.run_id, msg.reason):
            logger.info("run %s cancelled by its requester: %s", msg.run_id, msg.reason,
                        extra=log_fields(run_id=msg.run_id))

    # Declared for the AsyncAPI document only: the messages go out through the outbox (events)
    # and the reply sink (the requesting gateway's queue, named in each request's reply_to).
    for contract in (AgentRunFinished, AgentRunCompleted, AgentRunFailed, InteractionLogged):
        broker.publisher(exchange=EVENTS, routing_key=contract.routing_key, schema=contract,
                         title=f"{contract.routing_key}:publish", description=(contract.__doc__ or "").strip() or None)
    reply_queue = f"{REPLY_QUEUE_PREFIX}<gateway-instance>"
    for contract in (AgentRunStep, AgentRunFinished, AgentRunCompleted, AgentRunFailed):
        broker.publisher(reply_queue, schema=contract, title=f"{reply_queue}:{contract.__name__}",
                         description=f"{contract.__name__} to the queue named in the request's reply_to (not persisted)")


def delivery_attempt(headers: dict | None) -> int:
    """1 for the first delivery; quorum queues count earlier failed deliveries in x-delivery-count."""
    return int((headers or {}).get("x-delivery-count", 0) or 0) + 1
