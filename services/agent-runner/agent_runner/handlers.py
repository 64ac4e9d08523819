"""Message subscribers: each takes its contract and calls one use case."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker
from faststream.rabbit.annotations import RabbitMessage

from contracts import AgentRunRequested, ModelDeployed
from servicekit.messaging import EVENTS, work_queue

from .service import RecordDeployment, RunAgent

SERVICE = "agent-runner"


def register(broker: RabbitBroker, *, run_agent: RunAgent, record_deployment: RecordDeployment,
             delivery_limit: int) -> list[str]:
    """Subscribe the handlers; returns the work queues (their dead-letter queues are declared)."""
    runs = work_queue(SERVICE, AgentRunRequested, delivery_limit=delivery_limit)
    deployments = work_queue(SERVICE, ModelDeployed, delivery_limit=delivery_limit)

    @broker.subscriber(runs, EVENTS, no_reply=True, title=runs.name)
    async def on_run_requested(request: AgentRunRequested, message: RabbitMessage) -> None:
        """Execute the run (streaming steps to `reply_to`) and record it exactly once."""
        await run_agent(request, attempt=delivery_attempt(message.headers))

    @broker.subscriber(deployments, EVENTS, no_reply=True, title=deployments.name)
    async def on_model_deployed(event: ModelDeployed) -> None:
        """Record the model version the registry wants this runner to serve."""
        await record_deployment(event)

    return [runs.name, deployments.name]


def delivery_attempt(headers: dict | None) -> int:
    """1 for the first delivery; quorum queues count earlier failed deliveries in x-delivery-count."""
    return int((headers or {}).get("x-delivery-count", 0) or 0) + 1
