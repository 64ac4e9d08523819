"""Use cases of the evaluator: take an export in, schedule evaluations under a lease, run one."""

from .accept import AcceptExport
from .run_evaluation import EvalPolicy, RunEvaluation
from .scheduler import evaluation_scheduler

__all__ = ["AcceptExport", "EvalPolicy", "evaluation_scheduler", "RunEvaluation"]
