"""Use cases of the trainer: take a request in, schedule jobs under a lease, run one job."""

from .accept import AcceptTraining
from .run_job import JobPolicy, RunTrainingJob
from .scheduler import training_scheduler

__all__ = ["AcceptTraining", "JobPolicy", "RunTrainingJob", "training_scheduler"]
