"""Run one leased evaluation: the candidate's quant ladder against production on the same suites.

1. Suites: the configured ones; regression suites read their examples (the candidate's dataset
   or a fixed val.jsonl); with `dataset_primary`, the BFCL suite `dataset-val` built from the
   candidate's dataset's validation split is the primary suite (written beside the report), the
   configured suites running beside it (their primary stands in when the split has no usable
   example); every suite capped at `max_items`.
2. For each quant of the candidate, smallest first: download it (sha256 checked), score it,
   and put it through the gate against production: per suite and per category of each item
   suite (evalkit.gate). Production is scored once, on first need, and its scores (per category
   too, with item counts) are cached per (version, quant, suite key), so the next evaluation
   reuses them. A json_validity/latency suite production has no score for (its measured suites
   changed, e.g. a new dataset-val) is measured on production's cached answers to the suites it
   measures plus new answers to the uncached ones only.
   The first quant that passes wins; the larger ones are not evaluated.
3. A JSON report (per-item verdicts included) goes to S3; evaluation.completed (always) and
   model.promoted (when a quant passed) are staged in the outbox with the outcome, one transaction.

The model work runs in a worker thread (`Scorer`), so the event loop keeps serving health,
heartbeating the lease and the AMQP connection. What ends an attempt (servicekit.attempts):
- a verdict: completed (passed or not).
- Postgres/S3/registry trouble or a crash: the lease is given back and the evaluation retried
  after `retry_delay_s`, until `max_attempts`; then it fails with an evaluation.completed that
  says why (passed=false).
- the lease is lost: the work stops after the current item, nothing is written.
- the service stops: the work stops after the current item, the lease is given back at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from contracts import EvaluationCompleted, deterministic_id
from evalkit.dataset_suite import DATASET_SUITE, dataset_suite, suite_jsonl
from evalkit.gate import decide, policy_for
from evalkit.scoring import EvaluationCancelledError, ItemResult, Progress, score_suites
from evalkit.suites import CANDIDATE_DATASET, REGRESSION, Suite, primary_suite, regression_items
from servicekit.attempts import MAX_REASON_CHARS, Attempt, AttemptRunner, LeaseLostError
from servicekit.logs import log_fields

from ..domain import (
    CandidateUnavailableError,
    EvaluationJob,
    ProductionModel,
    quant_ladder,
    quant_name,
    suite_keys,
)
from ..metrics import EvaluatorMetrics
from ..ports import CachedScore, Datasets, EvaluationStore, ModelFiles, Reports, Scorer
from ..report import EvalState, PreparedSuites, QuantOutcome, item_doc, item_result, outcome_events, read_of, report_of

logger = logging.getLogger("evaluator.evaluation")

@dataclass(frozen=True)
class EvalPolicy:
    """Plain values from the settings."""

    owner: str
    lease_ttl_s: float = 60.0
    heartbeat_s: float = 15.0
    max_attempts: int = 3
    retry_delay_s: float = 10.0
    max_items: int | None = 50
    max_tokens: int = 128
    n_ctx: int = 4096
    constrained: bool = True  # answers decoded under the tools' grammar (part of the score cache key)
    threshold: float | None = None
    tolerance: float | None = None
    latency_tolerance: float | None = None
    category_tolerance: float | None = None
    min_category_items: int | None = None
    dataset_primary: bool = False  # the primary suite is built from the candidate's dataset's val split


class RunEvaluation:
    def __init__(self, store: EvaluationStore, models: ModelFiles, datasets: Datasets, reports: Reports,
                 scorer: Scorer, metrics: EvaluatorMetrics, suites: Sequence[Suite], policy: EvalPolicy,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.models = models
        self.datasets = datasets
        self.reports = reports
        self.scorer = scorer
        self.metrics = metrics
        self.suites = list(suites)
        self.policy = policy
        self.clock = clock
        self.attempts = AttemptRunner(store, policy, what="evaluation", kind="eval", stopped_by="evaluator",
                                      logger=logger, clock=clock)

    def describe(self) -> dict[str, Any] | None:
        return self.attempts.describe()

    async def __call__(self, job: EvaluationJob) -> str:
        """One attempt at a claimed evaluation; the outcome (completed, failed, error, lost_lease)."""
        p = self.policy
        state = EvalState(job.evaluation_id, job.export.model_version, attempt=job.attempts)
        stop = threading.Event()  # tells the scoring thread to stop after the current item
        self.metrics.running.set(1)
        return await self.attempts.run(
            job.evaluation_id, state, correlation=job.export.envelope.correlation_id, last_error=job.last_error,
            heartbeat=lambda: self.store.heartbeat(job.evaluation_id, p.owner, p.lease_ttl_s, state.describe()),
            work=lambda attempt: self._attempt(job, state, stop, attempt),
            fail=lambda reason: self._give_up(job, reason), stop=stop.set, stop_errors=(EvaluationCancelledError,),
            ended=self._ended, evaluation_id=job.evaluation_id,
        )

    def _ended(self, outcome: str) -> None:
        self.metrics.running.set(0)
        if outcome == "error":
            self.metrics.gate_outcomes.labels(outcome="error").inc()

    # ------------------------------------------------------------------ one attempt (servicekit.attempts ends it)

    async def _attempt(self, job: EvaluationJob, state: EvalState, stop: threading.Event, attempt: Attempt) -> str:
        started = self.clock()
        await attempt.begin()
        outcome = await self._evaluate(job, state, stop)
        self.metrics.duration.observe(self.clock() - started)
        return outcome

    async def _evaluate(self, job: EvaluationJob, state: EvalState, stop: threading.Event) -> str:
        export = job.export
        ladder = quant_ladder(export)
        prepared = await self._suites_for(job)
        suites = prepared.suites
        p = self.policy
        keys = suite_keys(suites, max_tokens=p.max_tokens, n_ctx=p.n_ctx, constrained=p.constrained)
        gate_policy = policy_for(suites, threshold=p.threshold, tolerance=p.tolerance,
                                 latency_tolerance=p.latency_tolerance, category_tolerance=p.category_tolerance,
                                 min_category_items=p.min_category_items)
        production = await self.models.production()
        baseline: dict[str, CachedScore] | None = None
        outcomes: list[QuantOutcome] = []
        winner: QuantOutcome | None = None
        for file in ladder:
            quant = quant_name(file)
            outcome = QuantOutcome(file)
            outcomes.append(outcome)
            try:
                path = await self.models.local_candidate(file)
            except CandidateUnavailableError as exc:
                outcome.error = str(exc)
                state.verdicts[quant] = False
                logger.warning("candidate %s %s cannot be evaluated: %s", export.model_version, quant, exc)
                continue
            if baseline is None:  # only once a candidate file is at hand: a broken export costs no model time
                baseline = await self._baseline(production, suites, keys, state, stop)
            state.phase, state.model, state.done, state.total = "candidate", f"{export.model_version} {quant}", 0, 0
            outcome.evaluation = await self.scorer.score(
                path, suites, label=f"candidate {export.model_version} {quant}",
                on_progress=self._progress(state, "candidate"), stop=stop,
            )
            self._record_scores(export.model_version, quant, outcome.evaluation.scores.values())
            outcome.gate = decide(outcome.evaluation.scores, baseline, gate_policy)
            state.verdicts[quant] = outcome.gate.passed
            for check in outcome.gate.categories:  # a series per category judged, at 0 until it regresses
                self.metrics.category_regressions.labels(suite=check.suite, category=check.category)
            for failed in outcome.gate.failed_categories:
                self.metrics.category_regressions.labels(suite=failed.suite, category=failed.category).inc()
            logger.info("candidate %s %s: %s", export.model_version, quant,
                        "passed" if outcome.gate.passed else "failed", extra=log_fields(
                            evaluation_id=job.evaluation_id, quantization=quant, reasons=outcome.gate.reasons))
            if outcome.gate.passed:
                winner = outcome
                break
        state.phase = "reporting"
        report = report_of(job, {"max_items": p.max_items, "max_tokens": p.max_tokens, "n_ctx": p.n_ctx}, production,
                           prepared, keys, gate_policy, baseline or {}, outcomes, winner)
        report_uri = await self.reports.put(job.evaluation_id, report)
        events = outcome_events(job, production, baseline or {}, outcomes, winner, report_uri, gate_policy.primary)
        reason_text = None if winner else "; ".join(events[0].reasons)[:MAX_REASON_CHARS]
        state.settled = True
        if not await self.store.finish(job.evaluation_id, p.owner, passed=winner is not None,
                                       quantization=quant_name(winner.file) if winner else None,
                                       report_uri=report_uri, error=reason_text, events=events):
            raise LeaseLostError(job.evaluation_id)
        self.metrics.gate_outcomes.labels(outcome="passed" if winner else "failed").inc()
        logger.info("evaluation %s of %s: %s (report %s)", job.evaluation_id, export.model_version,
                    f"passed with {quant_name(winner.file)}" if winner else "not passed", report_uri,
                    extra=log_fields(evaluation_id=job.evaluation_id))
        return "completed"

    def _progress(self, state: EvalState, role: str) -> Callable[[Progress], None]:
        def update(p: Progress) -> None:  # runs on the scoring thread
            state.on_progress(p)
            self.metrics.items_answered.labels(role=role).inc()

        return update

    def _record_scores(self, version: str, quant: str, scores: Any) -> None:
        for s in scores:
            self.metrics.suite_score.labels(model_version=version, quantization=quant, suite=s.suite).set(s.score)

    async def _suites_for(self, job: EvaluationJob) -> PreparedSuites:
        lines_of: dict[str, list[dict[str, Any]]] = {}  # one read per source

        async def lines(source: str) -> list[dict[str, Any]]:
            if source not in lines_of:
                lines_of[source] = await self.datasets.regression_lines(source, job.export.dataset_id)
            return lines_of[source]

        out = []
        for suite in self.suites:
            if suite.kind == REGRESSION and suite.source and not suite.items:
                suite = suite.with_items(regression_items(await lines(suite.source), prefix=suite.name))
                logger.info("regression suite %s: %d items from %s", suite.name, len(suite.items), suite.source)
            out.append(suite.limited(self.policy.max_items))
        prepared = PreparedSuites(out)
        if self.policy.dataset_primary:
            await self._dataset_primary(job, prepared, await lines(CANDIDATE_DATASET))
        return prepared

    async def _dataset_primary(self, job: EvaluationJob, prepared: PreparedSuites,
                               lines: list[dict[str, Any]]) -> None:
        """`dataset-val` first and primary; the configured suites keep running beside it."""
        suite, built = dataset_suite(lines, source=CANDIDATE_DATASET)
        note: dict[str, Any] = {"name": DATASET_SUITE, "dataset_id": job.export.dataset_id, **built.summary()}
        prepared.dataset = note
        if not suite.items:
            fallback = primary_suite(prepared.suites).name
            prepared.primary_note = (f"{DATASET_SUITE}: the validation split of dataset {job.export.dataset_id} has no "
                                     f"example with tools and a known answer ({read_of(built)}); the primary is "
                                     f"{fallback}")
            logger.warning("%s", prepared.primary_note, extra=log_fields(evaluation_id=job.evaluation_id))
            return
        suite = suite.limited(self.policy.max_items)
        uri = await self.reports.put_suite(job.evaluation_id, DATASET_SUITE, suite_jsonl(
            suite, source=CANDIDATE_DATASET, dataset_id=job.export.dataset_id))
        suite = replace(suite, path=uri)
        note["uri"] = uri
        prepared.suites[:] = [suite, *(replace(s, primary=False) for s in prepared.suites)]
        logger.info("primary suite %s: %d of %d items (%s) from dataset %s's validation split", DATASET_SUITE,
                    len(suite.items), len(built.items), note["categories"], job.export.dataset_id,
                    extra=log_fields(evaluation_id=job.evaluation_id))

    async def _baseline(self, production: ProductionModel, suites: list[Suite], keys: dict[str, str],
                        state: EvalState, stop: threading.Event) -> dict[str, CachedScore]:
        """Production's scores: from the cache where it has them, the rest evaluated and cached."""
        cached = await self.store.cached_scores(production.version, production.quantization, list(keys.values()))
        have = {s.name: cached[keys[s.name]] for s in suites if keys[s.name] in cached}
        answered = {s.name for s in suites if s.generative and s.items}
        scoreable = [s for s in suites if s.name in answered
                     or (not s.generative and set(s.of or answered) & answered)]
        missing = [s for s in scoreable if s.name not in have]
        self.metrics.baseline_cache.labels(result="hit").inc(len(have))
        if not missing:
            return have
        self.metrics.baseline_cache.labels(result="miss").inc(len(missing))
        missing_names = {s.name for s in missing}
        needed = {s.name for s in missing if s.generative}
        item_suites = [s.name for s in suites if s.generative]
        for s in missing:
            if not s.generative:  # measured on the answers to its suites: cached answers need no new generation
                needed |= {m for m in (s.of or item_suites) if not (m in have and have[m].items)}
        run = [s for s in suites if s.name in needed]
        answers: list[ItemResult] = []
        if run:
            path = await self.models.local_production(production)
            state.phase, state.model, state.done, state.total = "production", production.version, 0, 0
            evaluation = await self.scorer.score(path, run, label=f"production {production.version}",
                                                 on_progress=self._progress(state, "production"), stop=stop)
            answers = list(evaluation.items)
        reused = [item_result(doc) for name, c in have.items() if name in item_suites and name not in needed
                  for doc in c.items]
        scores = score_suites(suites, [*answers, *reused])
        fresh = [
            CachedScore(name, keys[name], r.kind, r.score, r.per_category, r.details,
                        [item_doc(i) for i in answers if i.suite == name])
            for name, r in scores.items() if name in missing_names
        ]
        await self.store.save_scores(production.version, production.quantization, fresh)
        self._record_scores(production.version, production.quantization, fresh)
        have.update({c.suite: c for c in fresh})
        return have

    async def _give_up(self, job: EvaluationJob, reason: str) -> bool:
        """A failed evaluation: a negative verdict that says why (evaluation.completed, passed=false)."""
        export = job.export
        event = EvaluationCompleted.create(
            correlation_id=export.envelope.correlation_id, causation=export,
            message_id=deterministic_id("evaluation-completed", job.evaluation_id),
            evaluation_id=job.evaluation_id, job_id=job.job_id, candidate=export.model_version, passed=False,
            reasons=[reason],
        )
        if not await self.store.finish(job.evaluation_id, self.policy.owner, passed=False, quantization=None,
                                       report_uri=None, error=reason, events=[event]):
            return False
        self.metrics.gate_outcomes.labels(outcome="failed").inc()
        return True

    # ------------------------------------------------------------------ outputs

