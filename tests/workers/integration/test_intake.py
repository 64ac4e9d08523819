"""Each learning-loop worker, as a real process on a vhost and database of this module's own,
takes an event in exactly once and dead-letters a body that breaks the contract."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import asyncpg
import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts import (
    EVENTS_EXCHANGE,
    AgentRunFinished,
    Contract,
    ExportCompleted,
    FeedbackSubmitted,
    ModelPromoted,
    RetrainRequested,
    TrainingCompleted,
    TrainingRequested,
    dead_letter_queue_name,
    queue_name,
)
from modelregistry.model import ModelFile
from modelregistry.write import register_candidate
from servicekit.messaging import make_broker, publish_event
from tests.harness import (
    RABBIT_HOST,
    IsolatedEnv,
    ServiceProcess,
    create_database,
    create_vhost,
    delete_vhost,
    drop_database,
    migrate,
    wait_until,
)

# module -> (service name, Postgres schema, contracts it consumes)
WORKERS: dict[str, tuple[str, str, tuple[type[Contract], ...]]] = {
    "log_miner": ("log-miner", "log_miner", (AgentRunFinished, FeedbackSubmitted, RetrainRequested)),
    "trainer": ("trainer", "trainer", (TrainingRequested,)),
    "evaluator": ("evaluator", "evaluator", (ExportCompleted,)),
    "exporter": ("exporter", "exporter", (ModelPromoted,)),
}

CASES = [(module, contract) for module, (_, _, contracts) in WORKERS.items() for contract in contracts]


def sample(contract: type[Contract], message_id: str) -> Contract:
    """A valid message of `contract` with a fixed message id."""
    key = uuid.uuid4().hex[:8]
    fields: dict[type[Contract], dict] = {
        AgentRunFinished: dict(
            run_id=f"run-{key}",
            status="completed",
            outcome="answered",
            messages=[{"role": "user", "content": "What is 17*23?"}, {"role": "assistant", "content": "391"}],
            model_version="base",
            engine="llamacpp",
        ),
        FeedbackSubmitted: dict(feedback_id=f"fb-{key}", run_id=f"run-{key}", rating=1, submitted_by="tester"),
        RetrainRequested: dict(request_id=f"rq-{key}", requested_by="tester"),
        TrainingRequested: dict(
            job_id=f"job-{key}", dataset_id=f"ds-{key}", train_uri="s3://b/train.jsonl", base_model="base"
        ),
        TrainingCompleted: dict(
            job_id=f"job-{key}", dataset_id=f"ds-{key}", base_model="base", adapter_uri="s3://b/adapter"
        ),
        # The GGUF is in no bucket: the evaluation ends with a negative verdict, no model time spent.
        ExportCompleted: dict(
            model_version=f"v-{key}",
            files=[{"uri": f"s3://no-such-bucket-{key}/Q4_K_M.gguf", "sha256": "0" * 64, "size_bytes": 1,
                    "kind": "gguf", "quantization": "Q4_K_M"}],
            job_id=f"job-{key}",
        ),
        ModelPromoted: dict(
            model_version=f"v-{key}",
            job_id=f"job-{key}",
            evaluation_id=f"ev-{key}",
            adapter_uri="s3://b/adapter",
            base_model="base",
        ),
    }
    return contract.create(correlation_id=f"test-{key}", message_id=message_id, **fields[contract])


@dataclass(frozen=True)
class WorkerEnv:
    """A vhost and database of this module's own: the session's `stack` (started by other
    areas) consumes from the session vhost, and a second consumer there would take our messages."""

    env: dict[str, str]
    broker_url: str
    database_url: str


@pytest.fixture(scope="module")
def worker_env(infra: IsolatedEnv) -> Iterator[WorkerEnv]:
    suffix = uuid.uuid4().hex[:8]
    vhost, database = f"{infra.vhost}-workers-{suffix}", f"{infra.database}_workers_{suffix}"
    broker_url = f"amqp://guest:guest@{RABBIT_HOST}:5672/{vhost}"
    database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
    create_vhost(vhost)
    create_database(database)
    try:
        migrate(database_url)
        yield WorkerEnv({**infra.env, "BROKER__URL": broker_url, "DATABASE__URL": database_url}, broker_url, database_url)
    finally:
        delete_vhost(vhost)
        drop_database(database)


@pytest.fixture(scope="module")
def workers(worker_env: WorkerEnv, session_tmp: Path) -> Iterator[dict[str, ServiceProcess]]:
    procs = {
        module: ServiceProcess(module, {**worker_env.env, "INSTANCE_ID": f"{module}-test"}, session_tmp / "worker-logs")
        for module in WORKERS
    }
    try:
        for p in procs.values():
            p.start(wait=False)
        for p in procs.values():
            p.wait_ready()
        yield procs
    finally:
        for p in procs.values():
            p.stop()


@pytest.fixture(scope="module")
async def broker(worker_env: WorkerEnv, workers) -> AsyncIterator:
    b = make_broker(worker_env.broker_url, prefetch=1, app_id="tests")
    await b.connect()
    try:
        yield b
    finally:
        await b.stop()


@pytest.fixture(scope="module")
async def amqp(worker_env: WorkerEnv, workers) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    conn = await aio_pika.connect_robust(worker_env.broker_url)
    try:
        yield await conn.channel()
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def db(worker_env: WorkerEnv) -> Iterator[psycopg.Connection]:
    with psycopg.connect(worker_env.database_url.replace("+asyncpg", ""), autocommit=True) as conn:
        yield conn


def received_total(proc: ServiceProcess, module: str, message_type: str) -> float:
    text = httpx.get(proc.url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == f"{module}_messages_received":
            for s in family.samples:
                if s.name.endswith("_total") and s.labels.get("type") == message_type:
                    return s.value
    return 0.0


def logged(proc: ServiceProcess, text: str, message_id: str) -> Callable[[], bool]:
    def check() -> bool:
        for line in proc.log_text().splitlines():
            if text in line and message_id in line:
                return True
        return False

    return check


@pytest.mark.parametrize(("module", "contract"), CASES, ids=[f"{m}-{c.__name__}" for m, c in CASES])
async def test_worker_takes_in_a_message_published_twice_exactly_once(workers, worker_env, broker, db, module, contract):
    _, schema, _ = WORKERS[module]
    proc = workers[module]
    message_id = str(uuid.uuid4())
    msg = sample(contract, message_id)
    if isinstance(msg, ModelPromoted):  # only an exported (registered) version can be promoted
        await _register_candidate(worker_env, msg)

    await publish_event(broker, msg)
    await publish_event(broker, msg)

    wait_until(logged(proc, "duplicate delivery ignored", message_id), 30, what=f"{module} to see the duplicate")
    rows = db.execute(f"SELECT message_type FROM {schema}.inbox WHERE message_id = %s", (message_id,)).fetchall()
    assert rows == [(contract.__name__,)]
    # The counter counts claimed messages only. Other messages of the type may arrive meanwhile
    # (the log-miner answers a RetrainRequested with its own TrainingRequested), so compare it
    # with the inbox, where each distinct message id is one row.
    def counter_matches_inbox() -> bool:
        claimed = db.execute(f"SELECT count(*) FROM {schema}.inbox WHERE message_type = %s", (contract.__name__,))
        return received_total(proc, module, contract.__name__) == float(claimed.fetchone()[0])

    wait_until(counter_matches_inbox, 10, what=f"{module}'s received counter to equal its inbox rows")


async def _register_candidate(worker_env: WorkerEnv, msg: ModelPromoted) -> None:
    conn = await asyncpg.connect(worker_env.database_url.replace("+asyncpg", ""))
    try:
        await register_candidate(
            conn, version=msg.model_version, base_model=msg.base_model, job_id=msg.job_id, dataset_id=None,
            adapter_uri=msg.adapter_uri, lineage={},
            files=[ModelFile(quantization="Q4_K_M", uri=f"s3://b/{msg.model_version}/Q4_K_M.gguf",
                             sha256="0" * 64, size_bytes=1, kind="gguf")],
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("module", list(WORKERS))
async def test_worker_dead_letters_a_body_that_breaks_the_contract(workers, amqp, module):
    service, _, contracts = WORKERS[module]
    contract = contracts[0]
    marker = uuid.uuid4().hex
    body = json.dumps({"envelope": {"message_id": marker}, "unexpected": True}).encode()
    await _publish_raw(amqp, contract.routing_key, body, marker)
    await _expect_dead_letter(amqp, dead_letter_queue_name(queue_name(service, contract)), marker, body)


async def test_worker_dead_letters_a_body_that_is_not_json(workers, amqp):
    marker = uuid.uuid4().hex
    body = b"\x00not json at all"
    await _publish_raw(amqp, AgentRunFinished.routing_key, body, marker)
    await _expect_dead_letter(
        amqp, dead_letter_queue_name(queue_name("log-miner", AgentRunFinished)), marker, body
    )


async def test_a_valid_message_holding_a_nul_is_dead_lettered_at_once_with_its_cause(workers, amqp):
    """Postgres cannot store a NUL: the body is refused before any handler runs (no retries, no
    crash loop), and the log says which field."""
    marker = uuid.uuid4().hex
    doc = json.loads(sample(AgentRunFinished, marker).model_dump_json())
    doc["messages"][0]["content"] = "What is 17*23?\u0000"
    body = json.dumps(doc).encode()
    await _publish_raw(amqp, AgentRunFinished.routing_key, body, marker)
    await _expect_dead_letter(
        amqp, dead_letter_queue_name(queue_name("log-miner", AgentRunFinished)), marker, body
    )
    log = workers["log_miner"].log_path.read_text()
    line = next(x for x in log.splitlines() if marker in x and "dead-lettering" in x)
    assert "messages[0].content contains a NUL character" in line
    assert "retrying message" not in "".join(x for x in log.splitlines() if marker in x)


async def _publish_raw(channel: aio_pika.abc.AbstractChannel, routing_key: str, body: bytes, message_id: str) -> None:
    exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=True)
    await exchange.publish(
        aio_pika.Message(body, message_id=message_id, content_type="application/json"),
        routing_key=routing_key,
        mandatory=True,
    )


async def _expect_dead_letter(channel: aio_pika.abc.AbstractChannel, dlq: str, message_id: str, body: bytes) -> None:
    """Poll the DLQ until the message with `message_id` shows up; other dead letters are put back."""
    queue = await channel.get_queue(dlq, ensure=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        msg = await queue.get(no_ack=False, fail=False)
        if msg is None:
            await asyncio.sleep(0.2)
            continue
        if msg.message_id == message_id:
            await msg.ack()
            assert msg.body == body
            return
        await msg.reject(requeue=True)
    raise AssertionError(f"message {message_id} never reached {dlq}")
