"""Exchange, routing key and queue names: defined here once, used by every service."""

from __future__ import annotations

from .agent import (
    AgentRunCompleted,
    AgentRunFailed,
    AgentRunFinished,
    AgentRunCancelRequested,
    AgentRunRequested,
    AgentRunStep,
    FeedbackSubmitted,
    InteractionLogged,
)
from .envelope import Contract
from .learning import (
    CanaryEnded,
    CanaryJudged,
    CanaryStartRequested,
    CanaryStopRequested,
    DatasetBuilt,
    EvaluationCompleted,
    ExportCompleted,
    ExportFailed,
    ModelDeployed,
    ModelPromoted,
    ModelPromoteRequested,
    ModelRollbackRequested,
    RetrainRequested,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
)

EVENTS_EXCHANGE = "agentloop.events"
DEAD_LETTER_EXCHANGE = "agentloop.dead-letter"
DEAD_LETTER_SUFFIX = ".dlq"
REPLY_QUEUE_PREFIX = "gateway.replies."

ALL_CONTRACTS: tuple[type[Contract], ...] = (
    AgentRunRequested,
    AgentRunStep,
    AgentRunCompleted,
    AgentRunFailed,
    AgentRunFinished,
    AgentRunCancelRequested,
    InteractionLogged,
    FeedbackSubmitted,
    RetrainRequested,
    DatasetBuilt,
    TrainingRequested,
    TrainingProgress,
    TrainingCompleted,
    TrainingFailed,
    EvaluationCompleted,
    ModelPromoted,
    ModelPromoteRequested,
    ModelRollbackRequested,
    ExportCompleted,
    ExportFailed,
    ModelDeployed,
    CanaryStartRequested,
    CanaryStopRequested,
    CanaryJudged,
    CanaryEnded,
)

BY_TYPE: dict[str, type[Contract]] = {c.__name__: c for c in ALL_CONTRACTS}

SERVICES = ("gateway", "agent-runner", "log-miner", "trainer", "evaluator", "exporter")


def queue_name(consumer: str, contract: type[Contract]) -> str:
    """`<consumer>.<domain>.<event>.v<N>`: one durable work queue per consumer and event."""
    if consumer not in SERVICES:
        raise ValueError(f"unknown consumer {consumer!r}")
    return f"{consumer}.{contract.routing_key}"


def dead_letter_queue_name(queue: str) -> str:
    return queue + DEAD_LETTER_SUFFIX
