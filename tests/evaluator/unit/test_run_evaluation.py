"""The evaluation use case with fakes of the evaluator's own ports: the quant ladder smallest
first, the first passing quant wins, production scored once and cached, the events and report."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest

from contracts import EvaluationCompleted, ExportCompleted, ExportedFile, ModelPromoted
from evalkit.suites import Suite
from evaluator.domain import ProductionUnavailableError, evaluation_id_for, suite_keys
from evaluator.metrics import EvaluatorMetrics
from evaluator.service import AcceptExport, EvalPolicy, RunEvaluation
from modelkit.chat_format import format_tool_calls
from prometheus_client import CollectorRegistry
from servicekit.jobs import JobScheduler
from servicekit.messaging import PermanentError
from evaluator.adapters.evaluation_store import EvaluationJobStore
from tests.evaluator.unit.fakes import FakeDatasets, FakeModels, FakeReports, FakeScorer, FakeScores
from tests.servicekit.fakes import FakeJobQueue

WEATHER = {"name": "weather", "description": "", "parameters": {"type": "dict", "properties": {
    "city": {"type": "string"}}, "required": ["city"]}}
CITIES = ("Paris", "Rome", "Oslo", "Lima")
ITEMS = tuple({"id": f"w{n}", "category": "simple", "question": [[{"role": "user", "content": f"Weather in {c}?"}]],
               "function": [WEATHER], "ground_truth": [{"weather": {"city": [c]}}], "expect": "ast_match"}
              for n, c in enumerate(CITIES))
SUITES = [Suite("tools", "ast", items=ITEMS, primary=True), Suite("json", "json_validity"),
          Suite("replay", "regression", source="candidate_dataset")]


def knows(*cities: str):
    """A model that calls the tool right for these cities and answers in prose otherwise."""
    def answer(prompt: str) -> str:
        for c in cities:
            if f"Weather in {c}?" in prompt:
                return format_tool_calls([{"name": "weather", "arguments": {"city": c}}])
        return "No idea."
    return answer


def quant(q: str, size: int) -> ExportedFile:
    return ExportedFile(uri=f"s3://bucket/models/v1/{q}.gguf", sha256="a" * 64, size_bytes=size, kind="gguf",
                        quantization=q)


def export(files: list[ExportedFile], **extra) -> ExportCompleted:
    return ExportCompleted.create(correlation_id="job-1", model_version="gemma-v1", files=files, job_id="job-1",
                                  dataset_id="ds-1", base_model="base", adapter_uri="s3://bucket/adapters/job-1",
                                  **extra)


LADDER = [quant("Q8_0", 300), quant("Q4_K_M", 100), quant("Q5_K_M", 150)]


class World:
    def __init__(self, models: dict, *, threshold: float = 0.5, max_attempts: int = 3, missing=(),
                 production_error=None, suites=SUITES, **policy_extra) -> None:
        self.queue = FakeJobQueue("evaluation_id")  # the shared fake under the evaluator's real row mapping
        self.scores = FakeScores()
        self.store = EvaluationJobStore(self.queue, self.scores)
        self.models = FakeModels(set(missing), production_error)
        self.datasets = FakeDatasets()
        self.reports = FakeReports()
        self.scorer = FakeScorer(models)
        self.metrics = EvaluatorMetrics(CollectorRegistry())
        policy = EvalPolicy(owner="me", heartbeat_s=30, max_attempts=max_attempts, retry_delay_s=0, threshold=threshold,
                            tolerance=0.0, latency_tolerance=1.0, **policy_extra)
        self.run = RunEvaluation(self.store, self.models, self.datasets, self.reports, self.scorer, self.metrics,
                                 suites, policy)
        self.scheduler = JobScheduler(self.store, self.run, self.metrics.counts, owner="me", lease_ttl_s=60,
                                      poll_interval_s=1, retry_delay_s=0, what="evaluation",
                                      logger=logging.getLogger("evaluator.scheduler"))
        self.accept = AcceptExport(self.store, self.metrics, self.scheduler.poke)

    async def evaluate(self, msg: ExportCompleted) -> str | None:
        await self.accept(msg)
        return await self.scheduler.run_once()

    def events(self, kind):
        return [e for e in self.queue.published if isinstance(e, kind)]

    def row(self, evaluation_id: str) -> SimpleNamespace:
        return SimpleNamespace(**self.queue.rows[evaluation_id])

    def rows(self) -> list[SimpleNamespace]:
        return [self.row(key) for key in self.queue.rows]


async def test_the_smallest_passing_quant_wins_and_larger_ones_are_not_evaluated():
    w = World({"production.gguf": knows("Paris", "Rome"), "Q4_K_M.gguf": knows("Rome"),
               "Q5_K_M.gguf": knows("Paris", "Rome", "Oslo"), "Q8_0.gguf": knows(*CITIES)})
    msg = export(LADDER)
    assert await w.evaluate(msg) == "completed"
    assert [name for name, _ in w.scorer.calls] == ["production.gguf", "Q4_K_M.gguf", "Q5_K_M.gguf"]
    (done,) = w.events(EvaluationCompleted)
    (promoted,) = w.events(ModelPromoted)
    assert done.passed and done.quantization == "Q5_K_M" and done.baseline == "base@1"
    assert done.primary_suite == "tools"
    assert done.evaluation_id == evaluation_id_for(msg)
    assert {s.suite: s.score for s in done.candidate_scores}["tools"] == 0.75
    assert {s.suite: s.score for s in done.baseline_scores}["tools"] == 0.5
    assert all(r.startswith("Q5_K_M: ok") for r in done.reasons)
    assert (promoted.model_version, promoted.quantization, promoted.gguf_uri, promoted.sha256) == (
        "gemma-v1", "Q5_K_M", LADDER[2].uri, "a" * 64)
    assert (promoted.adapter_uri, promoted.job_id, promoted.evaluation_id) == ("s3://bucket/adapters/job-1", "job-1",
                                                                              done.evaluation_id)
    assert promoted.envelope.causation_id == done.envelope.message_id
    assert w.queue.outbox == w.queue.published  # staged with the outcome, then published
    report = w.reports.reports[done.evaluation_id]
    assert [c["quantization"] for c in report["candidates"]] == ["Q4_K_M", "Q5_K_M"]
    assert report["candidates"][0]["passed"] is False
    assert {i["id"]: i["code"] for i in report["candidates"][0]["items"]}["w0"] == "no_call"
    assert len(report["baseline"]["items"]) == 4
    row = w.row(done.evaluation_id)
    assert (row.status, row.passed, row.quantization) == ("completed", True, "Q5_K_M")


async def test_no_passing_quant_means_a_negative_verdict_and_no_promotion():
    w = World({"production.gguf": knows(*CITIES), "Q4_K_M.gguf": knows("Rome"), "Q5_K_M.gguf": knows("Rome"),
               "Q8_0.gguf": knows(*CITIES[:3])})
    assert await w.evaluate(export(LADDER)) == "completed"
    (done,) = w.events(EvaluationCompleted)
    assert not done.passed and done.quantization is None and w.events(ModelPromoted) == []
    assert any(r.startswith("Q8_0: FAIL tools") for r in done.reasons)
    assert len(w.scorer.calls) == 4
    assert w.row(done.evaluation_id).status == "completed"


async def test_the_verdict_names_the_gate_policys_primary_suite_whatever_its_position():
    suites = [Suite("json", "json_validity"), Suite("calls", "ast", items=ITEMS, primary=True)]
    w = World({"production.gguf": knows("Paris"), "Q4_K_M.gguf": knows("Rome")}, suites=suites)
    await w.evaluate(export([quant("Q4_K_M", 1)]))
    (done,) = w.events(EvaluationCompleted)
    assert not done.passed and done.primary_suite == "calls"
    assert {s.suite: s.score for s in done.candidate_scores}["calls"] == 0.25


async def test_the_absolute_threshold_holds_back_a_candidate_that_ties_production():
    w = World({"production.gguf": knows("Paris"), "Q4_K_M.gguf": knows("Paris")}, threshold=0.5)
    await w.evaluate(export([quant("Q4_K_M", 1)]))
    (done,) = w.events(EvaluationCompleted)
    assert not done.passed and any("below the threshold" in r for r in done.reasons)


async def test_production_is_scored_once_and_taken_from_the_cache_afterwards():
    models = {"production.gguf": knows("Paris"), "Q4_K_M.gguf": knows("Paris", "Rome")}
    w = World(models, threshold=0.0)
    await w.evaluate(export([quant("Q4_K_M", 1)]))
    await w.evaluate(export([quant("Q4_K_M", 1)]))  # another export message: another evaluation
    assert [name for name, _ in w.scorer.calls] == ["production.gguf", "Q4_K_M.gguf", "Q4_K_M.gguf"]
    keys = suite_keys([s.limited(50) for s in SUITES], max_tokens=128, n_ctx=4096)
    assert {k for (_, _, k) in w.scores.scores} == {keys["tools"], keys["json"]}  # replay had no items
    assert len(w.events(ModelPromoted)) == 2


async def test_an_unavailable_quant_is_skipped_with_its_reason():
    w = World({"production.gguf": knows("Paris"), "Q5_K_M.gguf": knows("Paris")}, threshold=0.0,
              missing={LADDER[1].uri})
    await w.evaluate(export(LADDER))
    (done,) = w.events(EvaluationCompleted)
    assert done.passed and done.quantization == "Q5_K_M"
    report = w.reports.reports[done.evaluation_id]
    assert "not found" in report["candidates"][0]["error"]


async def test_an_export_whose_files_are_all_unavailable_costs_no_model_time():
    w = World({}, missing={f.uri for f in LADDER})
    await w.evaluate(export(LADDER))
    (done,) = w.events(EvaluationCompleted)
    assert not done.passed and w.scorer.calls == []
    assert len([r for r in done.reasons if "not evaluated" in r]) == 3


async def test_regression_suites_read_the_candidates_dataset():
    w = World({"production.gguf": knows("Oslo"), "Q4_K_M.gguf": knows("Oslo")}, threshold=0.0)
    w.datasets.lines = [{"messages": [{"role": "user", "content": "Weather in Oslo?"},
                                      {"role": "assistant", "tool_calls": [{"id": "1", "name": "weather",
                                                                            "arguments": {"city": "Oslo"}}]}],
                         "tools": [{"type": "function", "function": WEATHER}]}]
    await w.evaluate(export([quant("Q4_K_M", 1)]))
    assert w.datasets.asked == [("candidate_dataset", "ds-1")]
    (done,) = w.events(EvaluationCompleted)
    assert {s.suite: s.score for s in done.candidate_scores}["replay"] == 1.0


async def test_a_transient_failure_is_retried_then_given_up_with_a_verdict():
    w = World({}, max_attempts=2, production_error=RuntimeError("registry down"))
    msg = export([quant("Q4_K_M", 1)])
    assert await w.evaluate(msg) == "error"
    assert await w.scheduler.run_once() == "error"
    assert w.events(EvaluationCompleted) == []
    assert await w.scheduler.run_once() == "failed"
    (done,) = w.events(EvaluationCompleted)
    assert not done.passed and "registry down" in done.reasons[0] and "gave up after 2 attempts" in done.reasons[0]
    assert done.primary_suite is None and done.candidate_scores == []  # the gate never ran
    assert w.row(done.evaluation_id).status == "failed"
    assert await w.scheduler.run_once() is None


async def test_production_unavailable_is_transient():
    w = World({}, production_error=ProductionUnavailableError("no GGUF"))
    assert await w.evaluate(export([quant("Q4_K_M", 1)])) == "error"
    row = w.rows()[0]
    assert row.status == "running" and row.lease_owner is None and "no GGUF" in row.last_error


async def test_a_redelivered_export_is_taken_in_once():
    w = World({})
    msg = export([quant("Q4_K_M", 1)])
    assert await w.accept(msg) is True
    assert await w.accept(msg) is False
    assert len(w.queue.rows) == 1


async def test_an_export_without_a_gguf_is_refused_for_good():
    w = World({})
    msg = export([ExportedFile(uri="s3://b/Modelfile", sha256="b" * 64, size_bytes=1, kind="modelfile")])
    with pytest.raises(PermanentError, match="no GGUF"):
        await w.accept(msg)
    assert w.queue.rows == {}


async def test_a_stopping_service_gives_the_lease_back_and_the_attempt_is_not_counted():
    import asyncio

    w = World({})
    started = asyncio.Event()

    async def blocking_score(gguf, suites, *, label, on_progress, stop):
        started.set()
        await asyncio.Event().wait()  # scoring that outlives the service

    w.scorer.score = blocking_score  # type: ignore[method-assign]
    await w.accept(export([quant("Q4_K_M", 1)]))
    task = asyncio.create_task(w.scheduler.run_once())
    await asyncio.wait_for(started.wait(), 5)
    assert w.run.describe()["phase"] == "production"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    row = w.rows()[0]
    assert (row.status, row.lease_owner, row.attempts) == ("running", None, 0)
    assert w.queue.published == [] and w.run.describe() is None


# --------------------------------------------------------------------------- the gate per category

JOKES = ("Tell me a joke.", "Write a haiku.")
NO_CALLS = tuple({"id": f"n{n}", "category": "irrelevance", "question": [[{"role": "user", "content": q}]],
                  "function": [WEATHER], "ground_truth": None, "expect": "no_call"} for n, q in enumerate(JOKES))
MIXED = [Suite("tools", "ast", items=ITEMS + NO_CALLS, primary=True), Suite("json", "json_validity")]


def calls_always(prompt: str) -> str:
    """Calls the tool for every question: every city right, and a call where none fits."""
    city = next((c for c in CITIES if f"Weather in {c}?" in prompt), "Nowhere")
    return format_tool_calls([{"name": "weather", "arguments": {"city": city}}])


async def test_a_candidate_that_loses_one_category_is_refused_while_its_total_rises_and_the_verdict_names_it():
    w = World({"production.gguf": knows("Paris"), "Q4_K_M.gguf": calls_always}, threshold=0.0, suites=MIXED,
              min_category_items=2)
    await w.evaluate(export([quant("Q4_K_M", 1)]))
    (done,) = w.events(EvaluationCompleted)
    cand = {s.suite: s for s in done.candidate_scores}["tools"]
    base = {s.suite: s for s in done.baseline_scores}["tools"]
    assert cand.score > base.score  # 4/6 against 3/6
    assert not done.passed and w.events(ModelPromoted) == []
    assert done.reasons == ["Q4_K_M: FAIL tools category 'irrelevance': 0.0000 regresses from production 1.0000 on 2 "
                            "items by 1.0000, beyond the category tolerance 0.0000"]
    assert cand.per_category == {"irrelevance": 0.0, "simple": 1.0}
    assert cand.details["category_items"] == base.details["category_items"] == {"irrelevance": 2, "simple": 4}
    assert base.per_category == {"irrelevance": 1.0, "simple": 0.25}
    # production's cached scores carry the categories and their item counts for the next evaluation
    (cached,) = [c for c in w.scores.scores.values() if c.suite == "tools"]
    assert cached.per_category == base.per_category and cached.details["category_items"]["simple"] == 4
    report = w.reports.reports[done.evaluation_id]
    assert report["gate"]["min_category_items"] == 2
    assert report["gate"]["rules"]["tools"] == {"kind": "ast", "tolerance": 0.0, "category_tolerance": 0.0}
    checks = {c["category"]: c for c in report["candidates"][0]["categories"]}
    assert checks["irrelevance"] == {"suite": "tools", "category": "irrelevance", "candidate": 0.0, "baseline": 1.0,
                                     "items": 2, "tolerance": 0.0, "gated": True, "passed": False}
    assert checks["simple"]["passed"] is True
    (family,) = w.metrics.category_regressions.collect()
    regressions = {s.labels["category"]: s.value for s in family.samples if s.name.endswith("_total")}
    assert regressions == {"irrelevance": 1.0, "simple": 0.0}  # a series per category judged


async def test_a_category_below_the_minimum_item_count_does_not_hold_a_candidate_back():
    w = World({"production.gguf": knows("Paris"), "Q4_K_M.gguf": calls_always}, threshold=0.0, suites=MIXED,
              min_category_items=3)
    await w.evaluate(export([quant("Q4_K_M", 1)]))
    (done,) = w.events(EvaluationCompleted)
    assert done.passed, done.reasons
    assert any("tools category 'irrelevance': 2 items, fewer than 3: not gated" in r for r in done.reasons)


def val_line(question: str, calls: list | None = None, answer: str | None = None) -> dict:
    turn: dict = {"role": "assistant", "content": answer}
    if calls:
        turn["tool_calls"] = [{"id": f"c{n}", "name": "weather", "arguments": {"city": c}}
                              for n, c in enumerate(calls)]
    return {"messages": [{"role": "user", "content": question}, turn],
            "tools": [{"type": "function", "function": WEATHER}], "meta": {"source": "mined", "kind": "corrected"}}


VAL = [val_line(f"Weather in {c}?", [c]) for c in CITIES[:3]] + [
    val_line("Weather in Paris? Weather in Rome?", ["Paris", "Rome"]),
    val_line("Tell me a joke.", answer="Why did the chicken..."),
    val_line("Write a haiku.", answer="Autumn moon..."),
]


async def test_the_primary_suite_can_be_built_from_the_candidates_validation_split():
    w = World({"production.gguf": knows("Paris"), "Q4_K_M.gguf": calls_always}, threshold=0.0, suites=MIXED,
              min_category_items=2, dataset_primary=True)
    w.datasets.lines = VAL
    await w.evaluate(export([quant("Q4_K_M", 1)]))
    assert w.datasets.asked == [("candidate_dataset", "ds-1")]
    assert w.scorer.calls[0] == ("production.gguf", ["dataset-val", "tools"])  # the fixed suites beside it
    (done,) = w.events(EvaluationCompleted)
    assert done.primary_suite == "dataset-val"
    cand = {s.suite: s for s in done.candidate_scores}
    assert cand["dataset-val"].details["category_items"] == {"irrelevance": 2, "parallel": 1, "simple": 3}
    assert "tools" in cand and "json" in cand
    assert not done.passed
    assert any(r.startswith("Q4_K_M: FAIL dataset-val category 'irrelevance'") for r in done.reasons)
    report = w.reports.reports[done.evaluation_id]
    assert report["gate"]["primary"] == "dataset-val" and report["gate"]["primary_note"] is None
    assert report["dataset_suite"]["categories"] == {"irrelevance": 2, "parallel": 1, "simple": 3}
    (entry,) = [s for s in report["suites"] if s["name"] == "dataset-val"]
    assert entry["path"] == f"s3://bucket/evaluations/{done.evaluation_id}/dataset-val.jsonl"
    assert entry["source"] == "candidate_dataset" and entry["items"] == 6
    body = w.reports.suites[(done.evaluation_id, "dataset-val")].decode().splitlines()
    assert json.loads(body[0])["suite"]["primary"] is True and len(body) == 7
    assert {json.loads(x)["category"] for x in body[1:]} == {"simple", "parallel", "irrelevance"}


async def test_without_a_usable_validation_split_the_configured_primary_stands_in_and_the_report_says_why():
    w = World({"production.gguf": knows("Paris"), "Q4_K_M.gguf": knows("Paris")}, threshold=0.0, suites=MIXED,
              dataset_primary=True)
    w.datasets.lines = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
                         "tools": []}]
    await w.evaluate(export([quant("Q4_K_M", 1)]))
    (done,) = w.events(EvaluationCompleted)
    assert done.passed and done.primary_suite == "tools"
    report = w.reports.reports[done.evaluation_id]
    assert "no example with tools and a known answer (1 read; skipped: 1 no_tools)" in report["gate"]["primary_note"]
    assert report["gate"]["primary_note"].endswith("the primary is tools")
    assert w.reports.suites == {}


def test_the_primary_setting_picks_a_configured_suite_or_the_candidates_dataset():
    from evalkit.suites import SuiteError
    from evaluator.domain import configured_suites
    from evaluator.settings import EvalSettings

    suites = [Suite("tools", "ast", items=ITEMS, primary=True), Suite("other", "ast", items=ITEMS),
              Suite("json", "json_validity")]
    assert [s.primary for s in configured_suites(suites, "other")] == [False, True, False]
    assert configured_suites(suites, None) == suites == configured_suites(suites, "candidate_dataset")
    with pytest.raises(SuiteError, match="'json' is not among the ast/regression suites"):
        configured_suites(suites, "json")
    with pytest.raises(SuiteError, match="named 'dataset-val'"):
        configured_suites([*suites, Suite("dataset-val", "ast", items=ITEMS)], "candidate_dataset")
    assert EvalSettings(primary=" ").primary is None
    assert EvalSettings().min_category_items == 10 and EvalSettings().category_tolerance is None


async def test_a_new_validation_split_costs_production_only_the_new_suites_answers():
    """json_validity measures dataset-val too, so its cache key changes with each dataset: it is
    measured on production's cached answers to `tools` plus new answers to dataset-val alone."""
    w = World({"production.gguf": knows("Paris"), "Q4_K_M.gguf": knows("Paris")}, threshold=0.0, suites=MIXED,
              dataset_primary=True)
    w.datasets.lines = VAL[:3]
    await w.evaluate(export([quant("Q4_K_M", 1)]))
    w.datasets.lines = VAL[3:]  # the next candidate's dataset
    w.scorer.calls.clear()
    await w.evaluate(export([quant("Q4_K_M", 1)]))
    assert w.scorer.calls == [("production.gguf", ["dataset-val"]), ("Q4_K_M.gguf", ["dataset-val", "tools", "json"])]
    first, second = w.events(EvaluationCompleted)
    assert second.passed, second.reasons
    base = {s.suite: s for s in second.baseline_scores}
    cand = {s.suite: s for s in second.candidate_scores}
    assert base["json"].score == cand["json"].score  # the same model: measured on the same answers
    assert base["json"].details == cand["json"].details
    assert base["tools"] == {s.suite: s for s in first.baseline_scores}["tools"]  # from the cache
