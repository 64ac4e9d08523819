"""Rules of the evaluator that need no I/O: the quant ladder, cache keys, ids, errors."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from contracts import ExportCompleted, ExportedFile, deterministic_id
from evalkit.dataset_suite import DATASET_SUITE
from evalkit.suites import CANDIDATE_DATASET, Suite, SuiteError, with_primary


class EvaluationStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


RUNNABLE = (EvaluationStatus.QUEUED, EvaluationStatus.RUNNING)


class BadExportError(ValueError):
    """An export.completed the evaluator can never act on (no GGUF in it)."""


class CandidateUnavailableError(Exception):
    """One quant of the candidate cannot be evaluated (missing object, wrong sha256, not our bucket)."""


class ProductionUnavailableError(Exception):
    """Production's GGUF cannot be resolved right now (registry unreachable, file missing): retried."""


@dataclass(frozen=True)
class EvaluationJob:
    evaluation_id: str
    export: ExportCompleted
    attempts: int
    last_error: str | None
    created_at: datetime | None = None

    @property
    def job_id(self) -> str:
        return self.export.job_id or self.export.model_version

    @property
    def summary(self) -> str:
        return f"evaluation {self.evaluation_id} of {self.export.model_version} (attempts so far {self.attempts})"


@dataclass(frozen=True)
class ProductionModel:
    version: str
    quantization: str
    gguf_uri: str
    sha256: str


def evaluation_id_for(export: ExportCompleted) -> str:
    """One evaluation per export.completed message: a redelivery finds the same evaluation."""
    return deterministic_id("evaluation", export.envelope.message_id)


def quant_ladder(export: ExportCompleted) -> list[ExportedFile]:
    """The candidate's GGUFs, smallest first (ties keep the exporter's order). BadExportError if none."""
    ggufs = [f for f in export.files if f.kind == "gguf"]
    if not ggufs:
        raise BadExportError(f"export of {export.model_version} lists no GGUF file: nothing to evaluate")
    return sorted(ggufs, key=lambda f: f.size_bytes)


def quant_name(file: ExportedFile) -> str:
    return file.quantization or file.uri.rsplit("/", 1)[-1]


def suite_keys(suites: Sequence[Suite], *, max_tokens: int, n_ctx: int, constrained: bool = True) -> dict[str, str]:
    """Per suite: the key its scores are cached under. It covers what the score depends on: the
    suite's content, the generation bounds and decoding, and for json_validity/latency the suites
    they measure."""
    by_name = {s.name: s for s in suites}
    keys = {}
    for s in suites:
        measured = [] if s.generative else sorted(
            by_name[n].content_hash() for n in (s.of or [x.name for x in suites if x.generative])
        )
        doc = {"suite": s.content_hash(), "measured": measured, "max_tokens": max_tokens, "n_ctx": n_ctx,
               "constrained": constrained}
        keys[s.name] = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    return keys


def configured_suites(suites: Sequence[Suite], primary: str | None) -> list[Suite]:
    """The loaded suites under the `primary` setting (EVAL__PRIMARY): None leaves the suites'
    own flags; a suite's name makes it the primary; `candidate_dataset` keeps the suites as they
    are (each evaluation builds `dataset-val` and puts it first). SuiteError when the name is
    unknown, or `dataset-val` is taken by a configured suite."""
    if primary is None:
        return list(suites)
    if primary == CANDIDATE_DATASET:
        if any(s.name == DATASET_SUITE for s in suites):
            raise SuiteError(f"a configured suite is named {DATASET_SUITE!r}, the name of the suite built from the "
                             f"candidate's dataset: rename it")
        return list(suites)
    return with_primary(suites, primary)
