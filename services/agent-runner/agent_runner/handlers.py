"""Message subscribers: each takes its contract and calls one use case (from the broker's
context, set by the composition root)."""

from __future__ import annotations

from typing import Annotated

from faststream import Context
from faststream.rabbit import RabbitBroker
from faststream.rabbit.annotations import RabbitMessage

from contracts import (
    REPLY_QUEUE_PREFIX,
    AgentRunCompleted,
    AgentRunFailed,
    AgentRunRequested,
    AgentRunStep,
    InteractionLogged,
    ModelDeployed,
)
from servicekit.messaging import EVENTS, work_queue

from . import SERVICE
from .service import RecordDeployment, RunAgent

RUN_AGENT_KEY = "agent_runner_run_agent"  # no dots: Context() reads them as attribute access
RECORD_DEPLOYMENT_KEY = "agent_runner_record_deployment"

RunAgentDep = Annotated[RunAgent, Context(RUN_AGENT_KEY)]
RecordDeploymentDep = Annotated[RecordDeployment, Context(RECORD_DEPLOYMENT_KEY)]


def register(broker: RabbitBroker, *, delivery_limit: int) -> None:
    @broker.subscriber(work_queue(SERVICE, AgentRunRequested, delivery_limit=delivery_limit), EVENTS, no_reply=True)
    async def on_run_requested(request: AgentRunRequested, message: RabbitMessage, run_agent: RunAgentDep) -> None:
        """Execute the run, streaming its steps to `reply_to`, and record it exactly once."""
        await run_agent(request, attempt=delivery_attempt(message.headers))

    @broker.subscriber(work_queue(SERVICE, ModelDeployed, delivery_limit=delivery_limit), EVENTS, no_reply=True)
    async def on_model_deployed(event: ModelDeployed, record_deployment: RecordDeploymentDep) -> None:
        """Record the model version the registry wants this runner to serve."""
        await record_deployment(event)

    # Declared for the AsyncAPI document only: the messages go out through the outbox (events)
    # and the reply sink (the requesting gateway's queue, named in each request's reply_to).
    for contract in (AgentRunCompleted, AgentRunFailed, InteractionLogged):
        broker.publisher(exchange=EVENTS, routing_key=contract.routing_key, schema=contract,
                         title=f"{contract.routing_key}:publish", description=(contract.__doc__ or "").strip() or None)
    reply_queue = f"{REPLY_QUEUE_PREFIX}<gateway-instance>"
    for contract in (AgentRunStep, AgentRunCompleted, AgentRunFailed):
        broker.publisher(reply_queue, schema=contract, title=f"{reply_queue}:{contract.__name__}",
                         description=f"{contract.__name__} to the queue named in the request's reply_to (not persisted)")


def delivery_attempt(headers: dict | None) -> int:
    """1 for the first delivery; quorum queues count earlier failed deliveries in x-delivery-count."""
    return int((headers or {}).get("x-delivery-count", 0) or 0) + 1
