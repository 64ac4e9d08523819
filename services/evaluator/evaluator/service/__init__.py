"""Use cases of the evaluator: take an export in, run one."""

from .accept import AcceptExport
from .run_evaluation import EvalPolicy, RunEvaluation

__all__ = ["AcceptExport", "EvalPolicy", "RunEvaluation"]
