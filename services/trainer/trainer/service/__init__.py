"""Use cases of the trainer: take a request in, run one job."""

from .accept import AcceptTraining
from .run_job import JobPolicy, RunTrainingJob

__all__ = ["AcceptTraining", "JobPolicy", "RunTrainingJob"]
