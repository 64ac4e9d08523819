"""Use cases of the log miner."""

from .build_dataset import BuildDataset, BuildRequest, BuildResult
from .canary_judge import JudgeCanaries
from .policy import RetrainPolicy
from .record import RecordRuns

__all__ = ["BuildDataset", "BuildRequest", "BuildResult", "JudgeCanaries", "RecordRuns", "RetrainPolicy"]
