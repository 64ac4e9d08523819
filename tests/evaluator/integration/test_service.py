"""The evaluator as a real process against real RabbitMQ, Postgres and S3, on the real model.

The candidate is the bundled GGUF uploaded to S3 under a new version name, so it ties with
production (the registry's bundled base). The gate decides both ways:
- a threshold it cannot reach (one suite item is unanswerable) → evaluation.completed with
  passed=false after every quant was tried, no model.promoted;
- a threshold it reaches, with tolerance → model.promoted with the smallest quant, production's
  scores taken from the cache the first evaluation filled.
A candidate that loses one category of a suite while the suite's score rises is refused, with
the primary suite built from the candidate's dataset's validation split in S3 (the last test).
Runs on a vhost, database and bucket of this module's own (the session's `stack` would
otherwise consume the messages published here). Few items, short answers: model time is small."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import psycopg
import pytest
from minio import Minio
from prometheus_client.parser import text_string_to_metric_families

from contracts import EVENTS_EXCHANGE, Contract, ExportCompleted, dead_letter_queue_name, queue_name
from evalkit.suites import load_suite, load_suites
from evaluator.domain import suite_keys
from modelkit.base_model import BUNDLED_MODEL_VERSION, bundled_gguf_path
from tests.harness import (
    RABBIT_HOST,
    IsolatedEnv,
    ServiceProcess,
    create_database,
    create_vhost,
    delete_vhost,
    drop_database,
    migrate,
)

pytestmark = pytest.mark.slow

SHIPPED = Path(__file__).resolve().parents[3] / "services" / "evaluator" / "evaluator" / "suites" / "tool-calls.jsonl"
UNANSWERABLE = {
    "id": "order-lookup", "category": "simple",
    "question": [[{"role": "user", "content": "Look up my last order, please."}]],
    "function": [{"name": "orders.get", "description": "Get an order by its id.", "parameters": {
        "type": "dict", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}],
    # an id the question never gives: no model can produce it, so the suite cannot reach 1.0
    "ground_truth": [{"orders.get": {"order_id": ["ORD-7731-QX"]}}], "expect": "ast_match",
}


@dataclass(frozen=True)
class EvalEnv:
    env: dict[str, str]
    broker_url: str
    database_url: str
    bucket: str


def write_suites(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shipped = [json.loads(line) for line in SHIPPED.read_text().splitlines()[1:]]
    picked = [i for i in shipped if i["id"] in ("simple-1", "irrelevance-1")] + [UNANSWERABLE]
    header = {"suite": {"name": "tools", "kind": "ast", "primary": True}}
    (root / "tools.jsonl").write_text("".join(json.dumps(x) + "\n" for x in [header, *picked]))
    (root / "json.jsonl").write_text(json.dumps({"suite": {"name": "json", "kind": "json_validity"}}) + "\n")
    (root / "latency.jsonl").write_text(json.dumps({"suite": {"name": "latency", "kind": "latency"}}) + "\n")
    return root


@pytest.fixture(scope="module")
def eval_env(infra: IsolatedEnv, session_tmp: Path) -> Iterator[EvalEnv]:
    suffix = uuid.uuid4().hex[:8]
    vhost, database = f"{infra.vhost}-evaluator-{suffix}", f"{infra.database}_evaluator_{suffix}"
    broker_url = f"amqp://guest:guest@{RABBIT_HOST}:5672/{vhost}"
    database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
    bucket = f"ev-{suffix}-{infra.suffix}"
    create_vhost(vhost)
    create_database(database)
    try:
        migrate(database_url)
        env = {
            **infra.env, "BROKER__URL": broker_url, "DATABASE__URL": database_url, "S3__BUCKET": bucket,
            "INSTANCE_ID": "evaluator-test",
            "EVAL__SUITES": str(write_suites(session_tmp / f"eval-suites-{suffix}")),
            "EVAL__WORK_DIR": str(session_tmp / f"eval-work-{suffix}"),
            "EVAL__MAX_TOKENS": "40", "EVAL__N_CTX": "2048",
            "EVAL__TOLERANCE": "0.05", "EVAL__LATENCY_TOLERANCE": "20",
            "EVAL__POLL_INTERVAL_S": "0.5", "EVAL__HEARTBEAT_S": "1", "EVAL__LEASE_TTL_S": "10",
        }
        yield EvalEnv(env, broker_url, database_url, bucket)
    finally:
        delete_vhost(vhost)
        drop_database(database)


@pytest.fixture(scope="module")
def s3(infra: IsolatedEnv, eval_env: EvalEnv) -> Minio:
    client = Minio(infra.s3.endpoint, access_key=infra.s3.access_key, secret_key=infra.s3.secret_key, secure=False)
    if not client.bucket_exists(eval_env.bucket):
        client.make_bucket(eval_env.bucket)
    return client


@dataclass(frozen=True)
class Candidate:
    version: str
    uri: str
    sha256: str
    size: int


@pytest.fixture(scope="module")
def candidate(s3: Minio, eval_env: EvalEnv) -> Candidate:
    """The bundled GGUF under a new version name, where the exporter would have put it."""
    path = bundled_gguf_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    version = f"gemma3-270m-{uuid.uuid4().hex[:8]}"
    key = f"models/{version}/{version}.Q4_K_M.gguf"
    s3.fput_object(eval_env.bucket, key, str(path))
    return Candidate(version, f"s3://{eval_env.bucket}/{key}", digest, path.stat().st_size)


@pytest.fixture(scope="module")
def evaluator(eval_env: EvalEnv, s3: Minio, session_tmp: Path) -> Iterator[ServiceProcess]:
    proc = ServiceProcess("evaluator", dict(eval_env.env), session_tmp / "evaluator-service-logs")
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def db(eval_env: EvalEnv) -> Iterator[psycopg.Connection]:
    with psycopg.connect(eval_env.database_url.replace("+asyncpg", ""), autocommit=True) as conn:
        yield conn


@dataclass
class Events:
    channel: aio_pika.abc.AbstractChannel
    exchange: aio_pika.abc.AbstractExchange
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def publish(self, message: Contract) -> None:
        await self.exchange.publish(
            aio_pika.Message(json.dumps(message.model_dump(mode="json")).encode(),
                             message_id=message.envelope.message_id, content_type="application/json",
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=message.routing_key, mandatory=True,
        )

    def of(self, routing_key: str, job_id: str) -> list[dict[str, Any]]:
        return [b for k, b in self.received if k == routing_key and b.get("job_id") == job_id]


@pytest.fixture(scope="module")
async def events(eval_env: EvalEnv, evaluator: ServiceProcess) -> AsyncIterator[Events]:
    connection = await aio_pika.connect_robust(eval_env.broker_url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=True)  # declared by the evaluator
    tap = Events(channel, exchange)
    # model.promoted needs a subscriber (the exporter): this tap queue stands in for it
    queue = await channel.declare_queue(f"test-tap-{uuid.uuid4().hex[:8]}", exclusive=True, auto_delete=True)
    for key in ("evaluation.completed.v1", "model.promoted.v1"):
        await queue.bind(exchange, routing_key=key)

    async def on_message(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        tap.received.append((msg.routing_key or "", json.loads(msg.body)))

    await queue.consume(on_message, no_ack=True)
    try:
        yield tap
    finally:
        await connection.close()


def export_message(candidate: Candidate, job_id: str, *quants: str, sha256: str | None = None) -> ExportCompleted:
    files = [{"uri": candidate.uri, "sha256": sha256 or candidate.sha256, "size_bytes": candidate.size, "kind": "gguf",
              "quantization": q} for q in quants]
    return ExportCompleted.create(
        correlation_id=f"test-{job_id}", job_id=job_id, model_version=candidate.version, files=files,
        dataset_id=f"ds-{job_id}", base_model=BUNDLED_MODEL_VERSION, adapter_uri=f"s3://bucket/training/{job_id}/adapter/",
    )


async def eventually(predicate, timeout: float, what: str) -> Any:
    """Poll a sync predicate without blocking the event loop (the tap consumer runs on it)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if value := predicate():
                return value
        except Exception as exc:  # not there yet
            last = exc
        await asyncio.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last!r})" if last else ""))


def metric(proc: ServiceProcess, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(httpx.get(proc.url + "/metrics", timeout=5).text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def rows(db: psycopg.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    cur = db.execute(sql, args)
    return [dict(zip([c.name for c in cur.description], r, strict=True)) for r in cur.fetchall()]


def restart_with(proc: ServiceProcess, **env: str) -> None:
    proc.env.update(env)
    proc.restart()


async def test_a_threshold_the_candidate_cannot_reach_gives_a_negative_verdict_after_every_quant(
    evaluator: ServiceProcess, events: Events, db: psycopg.Connection, s3: Minio, eval_env: EvalEnv,
    candidate: Candidate,
) -> None:
    restart_with(evaluator, EVAL__THRESHOLD="1.0")
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    msg = export_message(candidate, job_id, "Q4_K_M", "Q8_0")
    await events.publish(msg)

    seen: list[dict[str, Any]] = []

    def done() -> list[dict[str, Any]]:
        current = httpx.get(evaluator.url + "/health/detailed", timeout=5).json().get("current_evaluation")
        if current:
            seen.append(current)
        return events.of("evaluation.completed.v1", job_id)

    (verdict,) = await eventually(done, 900, "evaluation.completed")
    assert verdict["passed"] is False and verdict["quantization"] is None
    assert verdict["candidate"] == candidate.version and verdict["baseline"] == BUNDLED_MODEL_VERSION
    assert verdict["envelope"]["causation_id"] == msg.envelope.message_id
    for quant in ("Q4_K_M", "Q8_0"):
        assert any(r.startswith(f"{quant}: FAIL tools") and "below the threshold" in r for r in verdict["reasons"])
    cand = {s["suite"]: s for s in verdict["candidate_scores"]}
    base = {s["suite"]: s for s in verdict["baseline_scores"]}
    assert set(cand) == set(base) == {"tools", "json", "latency"}
    assert cand["tools"]["score"] < 1.0
    assert cand["tools"]["score"] == base["tools"]["score"]  # the same GGUF, greedy: a tie
    assert cand["tools"]["per_category"] == base["tools"]["per_category"]
    assert {"production", "candidate"} <= {s["phase"] for s in seen}
    assert all(s["evaluation_id"] == verdict["evaluation_id"] for s in seen)

    # nothing promoted: the outbox holds the verdict only
    staged = rows(db, "SELECT message_type FROM evaluator.outbox WHERE body->>'evaluation_id' = %s",
                  verdict["evaluation_id"])
    assert [r["message_type"] for r in staged] == ["EvaluationCompleted"]
    assert events.of("model.promoted.v1", job_id) == []
    (row,) = rows(db, "SELECT * FROM evaluator.evaluations WHERE evaluation_id = %s", verdict["evaluation_id"])
    assert (row["status"], row["passed"], row["attempts"], row["report_uri"]) == (
        "completed", False, 1, verdict["report_uri"])
    cached = rows(db, "SELECT suite, model_version, quantization FROM evaluator.baseline_scores ORDER BY suite")
    assert cached == [{"suite": s, "model_version": BUNDLED_MODEL_VERSION, "quantization": "Q4_K_M"}
                      for s in ("json", "latency", "tools")]

    # the report: per-item verdicts of production and of both quants
    key = verdict["report_uri"].removeprefix(f"s3://{eval_env.bucket}/")
    assert key == f"evaluations/{verdict['evaluation_id']}/report.json"
    report = json.loads(s3.get_object(eval_env.bucket, key).read())
    assert [c["quantization"] for c in report["candidates"]] == ["Q4_K_M", "Q8_0"]
    for part in (report["baseline"]["items"], *(c["items"] for c in report["candidates"])):
        assert {i["id"] for i in part} == {"simple-1", "irrelevance-1", "order-lookup"}
    order = next(i for i in report["candidates"][0]["items"] if i["id"] == "order-lookup")
    assert not order["ok"] and order["code"] != "ok"

    assert metric(evaluator, "evaluator_gate_outcomes_total", outcome="failed") == 1.0
    assert metric(evaluator, "evaluator_suite_score", model_version=candidate.version, quantization="Q8_0",
                  suite="tools") == cand["tools"]["score"]
    assert metric(evaluator, "evaluator_evaluation_duration_seconds_count") == 1.0


async def test_a_reachable_threshold_promotes_the_smallest_quant_with_production_from_the_cache(
    evaluator: ServiceProcess, events: Events, db: psycopg.Connection, candidate: Candidate,
) -> None:
    restart_with(evaluator, EVAL__THRESHOLD="0.0")
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    msg = export_message(candidate, job_id, "Q4_K_M", "Q5_K_M", "Q8_0")
    await events.publish(msg)
    await events.publish(msg)  # a redelivery: one evaluation only

    (verdict,) = await eventually(lambda: events.of("evaluation.completed.v1", job_id), 900, "evaluation.completed")
    assert verdict["passed"] is True and verdict["quantization"] == "Q4_K_M"
    assert all(r.startswith("Q4_K_M: ok") for r in verdict["reasons"])
    (promoted,) = await eventually(lambda: events.of("model.promoted.v1", job_id), 30, "model.promoted")
    assert promoted["model_version"] == candidate.version and promoted["quantization"] == "Q4_K_M"
    assert (promoted["gguf_uri"], promoted["sha256"]) == (candidate.uri, candidate.sha256)
    assert promoted["evaluation_id"] == verdict["evaluation_id"]
    assert promoted["adapter_uri"] == msg.adapter_uri and promoted["base_model"] == BUNDLED_MODEL_VERSION
    assert promoted["envelope"]["causation_id"] == verdict["envelope"]["message_id"]

    # production came from the cache; only the smallest quant was scored (3 items)
    assert metric(evaluator, "evaluator_baseline_cache_total", result="hit") == 3.0
    assert not metric(evaluator, "evaluator_baseline_cache_total", result="miss")
    assert not metric(evaluator, "evaluator_items_answered_total", role="production")
    assert metric(evaluator, "evaluator_items_answered_total", role="candidate") == 3.0
    assert metric(evaluator, "evaluator_gate_outcomes_total", outcome="passed") == 1.0
    assert "duplicate delivery ignored" in evaluator.log_text()
    assert len(rows(db, "SELECT 1 FROM evaluator.evaluations WHERE message_id = %s", msg.envelope.message_id)) == 1


async def test_an_evaluator_killed_mid_evaluation_is_replaced_and_the_verdict_published_once(
    evaluator: ServiceProcess, events: Events, db: psycopg.Connection, candidate: Candidate,
) -> None:
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    msg = export_message(candidate, job_id, "Q4_K_M")
    await events.publish(msg)

    def scoring() -> bool:
        current = httpx.get(evaluator.url + "/health/detailed", timeout=5).json().get("current_evaluation")
        return bool(current and current["phase"] == "candidate" and current["items_done"] >= 1)

    await eventually(scoring, 300, "the candidate being scored")
    evaluator.kill()  # SIGKILL: no goodbye, the lease stays until it expires
    evaluator.start()  # a new process, a new lease identity: it takes over once the lease expires
    (verdict,) = await eventually(lambda: events.of("evaluation.completed.v1", job_id), 600, "evaluation.completed")
    assert verdict["passed"] is True
    (row,) = rows(db, "SELECT attempts, status FROM evaluator.evaluations WHERE message_id = %s",
                  msg.envelope.message_id)
    assert row == {"attempts": 2, "status": "completed"}
    await eventually(lambda: events.of("model.promoted.v1", job_id), 30, "model.promoted")
    assert len(events.of("evaluation.completed.v1", job_id)) == 1
    assert len(events.of("model.promoted.v1", job_id)) == 1


async def test_a_candidate_file_with_another_checksum_is_not_evaluated(
    evaluator: ServiceProcess, events: Events, candidate: Candidate,
) -> None:
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    await events.publish(export_message(candidate, job_id, "Q4_K_M", sha256="0" * 64))
    (verdict,) = await eventually(lambda: events.of("evaluation.completed.v1", job_id), 120, "evaluation.completed")
    assert verdict["passed"] is False and verdict["candidate_scores"] == []
    (reason,) = verdict["reasons"]
    assert reason.startswith("Q4_K_M: not evaluated") and "sha256" in reason


async def test_an_export_without_a_gguf_is_dead_lettered_with_the_cause_logged(
    evaluator: ServiceProcess, events: Events, candidate: Candidate,
) -> None:
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    msg = ExportCompleted.create(correlation_id=f"test-{job_id}", job_id=job_id, model_version=candidate.version,
                                 files=[{"uri": candidate.uri, "sha256": candidate.sha256, "size_bytes": 1,
                                         "kind": "modelfile"}])
    await events.publish(msg)
    dlq = await events.channel.declare_queue(
        dead_letter_queue_name(queue_name("evaluator", ExportCompleted)), durable=True, passive=True)

    async def dead_lettered() -> aio_pika.abc.AbstractIncomingMessage | None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = await dlq.get(no_ack=True, fail=False)
            if got is not None and got.message_id == msg.envelope.message_id:
                return got
            await asyncio.sleep(0.2)
        return None

    assert await dead_lettered() is not None
    assert any("dead-lettering message" in line and "no GGUF" in line for line in evaluator.log_text().splitlines())


def val_line(question: str, tool: dict[str, Any], calls: list[dict[str, Any]] | None = None,
             answer: str | None = None) -> dict[str, Any]:
    """A line of a dataset's val.jsonl as the log-miner writes it."""
    turn: dict[str, Any] = {"role": "assistant", "content": answer}
    if calls:
        turn["tool_calls"] = [{"id": f"call_{n}", **c} for n, c in enumerate(calls, start=1)]
    spec = {"type": "function", "function": {**tool, "parameters": {**tool["parameters"], "type": "object"}}}
    return {"messages": [{"role": "user", "content": question}, turn], "tools": [spec],
            "meta": {"source": "mined", "kind": "corrected", "run_ids": [], "feedback_ids": [], "origin": None}}


async def test_a_candidate_that_loses_a_category_is_refused_while_its_total_rises_beside_the_trained_task(
    evaluator: ServiceProcess, events: Events, db: psycopg.Connection, s3: Minio, eval_env: EvalEnv,
    candidate: Candidate, session_tmp: Path,
) -> None:
    """The primary suite is built from the candidate's dataset's validation split in S3; the fixed
    `tools` suite runs beside it. The candidate is the bundled GGUF, as production is, so the two
    tie wherever production is scored here; on `tools` production's cached score is planted
    instead: a production that got one of the two `simple` items and one of the three
    `irrelevance` items (0.4). The real model answers every irrelevance item in text and neither
    simple item right (0.6): the suite rises, its `simple` category falls by half on 2 items."""
    shipped = {i["id"]: i for i in (json.loads(x) for x in SHIPPED.read_text().splitlines()[1:])}
    root = session_tmp / f"eval-category-suites-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    items = [shipped[i] for i in ("simple-1", "irrelevance-1", "irrelevance-2", "irrelevance-3")] + [UNANSWERABLE]
    (root / "tools.jsonl").write_text("".join(json.dumps(x) + "\n" for x in [{"suite": {"name": "tools"}}, *items]))
    (root / "json.jsonl").write_text(json.dumps({"suite": {"name": "json", "kind": "json_validity"}}) + "\n")
    tools_suite = next(s for s in load_suites([root]) if s.name == "tools")
    tools_key = suite_keys([tools_suite.limited(50)], max_tokens=40, n_ctx=2048)["tools"]
    db.execute("DELETE FROM evaluator.baseline_scores WHERE suite_key = %s", (tools_key,))
    db.execute(
        "INSERT INTO evaluator.baseline_scores (model_version, quantization, suite_key, suite, kind, score, "
        "per_category, details, items) VALUES (%s, 'Q4_K_M', %s, 'tools', 'ast', 0.4, %s, %s, '[]')",
        (BUNDLED_MODEL_VERSION, tools_key, json.dumps({"irrelevance": 1 / 3, "simple": 0.5}),
         json.dumps({"items": 5, "passed": 2, "category_items": {"irrelevance": 3, "simple": 2}})),
    )

    job_id = f"job-{uuid.uuid4().hex[:8]}"
    weather = shipped["simple-1"]["function"][0]
    val = [
        val_line("What's the weather like in Lisbon right now?", weather,
                 [{"name": "weather.current", "arguments": {"city": "Lisbon"}}]),
        val_line("Weather in Paris and in Madrid?", weather, [{"name": "weather.current", "arguments": {"city": c}}
                                                             for c in ("Paris", "Madrid")]),
        val_line("Write a haiku about autumn.", weather, answer="Leaves drift on cold wind..."),
    ]
    body = "".join(json.dumps(x) + "\n" for x in val).encode()
    s3.put_object(eval_env.bucket, f"datasets/ds-{job_id}/v1/val.jsonl", io.BytesIO(body), len(body))
    restart_with(evaluator, EVAL__SUITES=str(root), EVAL__PRIMARY="candidate_dataset", EVAL__MIN_CATEGORY_ITEMS="2",
                 EVAL__THRESHOLD="0.0")
    await events.publish(export_message(candidate, job_id, "Q4_K_M"))

    (verdict,) = await eventually(lambda: events.of("evaluation.completed.v1", job_id), 900, "evaluation.completed")
    cand = {s["suite"]: s for s in verdict["candidate_scores"]}
    base = {s["suite"]: s for s in verdict["baseline_scores"]}
    assert verdict["passed"] is False and events.of("model.promoted.v1", job_id) == []
    assert verdict["primary_suite"] == "dataset-val"
    assert cand["tools"]["score"] > base["tools"]["score"] == 0.4, (cand["tools"], verdict["reasons"])
    assert cand["tools"]["per_category"]["simple"] == 0.0
    failed = [r for r in verdict["reasons"] if "FAIL" in r]
    assert failed == ["Q4_K_M: FAIL tools category 'simple': 0.0000 regresses from production 0.5000 on 2 items by "
                      "0.5000, beyond the category tolerance 0.0500"], verdict["reasons"]
    assert cand["dataset-val"]["details"]["category_items"] == {"irrelevance": 1, "parallel": 1, "simple": 1}
    assert cand["dataset-val"]["per_category"] == base["dataset-val"]["per_category"]  # the same GGUF: a tie

    # production's scores on the new suite are cached with their categories and item counts
    (row,) = rows(db, "SELECT per_category, details FROM evaluator.baseline_scores WHERE suite = 'dataset-val'")
    assert set(row["per_category"]) == {"irrelevance", "parallel", "simple"}
    assert row["details"]["category_items"] == {"irrelevance": 1, "parallel": 1, "simple": 1}

    report = json.loads(s3.get_object(eval_env.bucket, verdict["report_uri"].removeprefix(
        f"s3://{eval_env.bucket}/")).read())
    assert report["gate"]["primary"] == "dataset-val" and report["gate"]["min_category_items"] == 2
    (simple,) = [c for c in report["candidates"][0]["categories"] if (c["suite"], c["category"]) == ("tools", "simple")]
    assert simple == {"suite": "tools", "category": "simple", "candidate": 0.0, "baseline": 0.5, "items": 2,
                      "tolerance": 0.05, "gated": True, "passed": False}
    assert report["dataset_suite"]["skipped"] == {} and report["dataset_suite"]["items"] == 3
    (entry,) = [s for s in report["suites"] if s["name"] == "dataset-val"]
    suite_file = session_tmp / f"{job_id}-dataset-val.jsonl"
    suite_key = entry["path"].removeprefix(f"s3://{eval_env.bucket}/")
    assert suite_key == f"evaluations/{verdict['evaluation_id']}/dataset-val.jsonl"
    suite_file.write_bytes(s3.get_object(eval_env.bucket, suite_key).read())
    written = load_suite(suite_file)
    assert written.primary and {i["category"] for i in written.items} == {"simple", "parallel", "irrelevance"}
    assert metric(evaluator, "evaluator_category_regressions_total", suite="tools", category="simple") == 1.0
