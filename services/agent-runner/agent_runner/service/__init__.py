"""Use cases of the agent-runner."""

from .agent_loop import AgentLoop, RunResult, StepStream
from .deployments import RecordDeployment, ReloadModel
from .run_agent import RunAgent, completed_id, failed_id, finished_id, logged_id
from .served_models import ServedModels

__all__ = [
    "AgentLoop",
    "RecordDeployment",
    "ReloadModel",
    "RunAgent",
    "RunResult",
    "ServedModels",
    "StepStream",
    "completed_id",
    "failed_id",
    "finished_id",
    "logged_id",
]
