"""The trainer service as a real process on the real Gemma 3 270M, against real RabbitMQ, Postgres
and S3: a TrainingRequested becomes an adapter in S3 that peft loads, a duplicate request is not
trained twice, and a trainer killed mid-run is replaced by one that resumes from the checkpoint
in S3 and completes the job exactly once.

The service runs on a vhost, database and bucket of this module's own (the session's `stack`,
started by other areas, would otherwise consume the requests published here). Two trainings on
the real model; each step takes seconds to tens of seconds on a shared 2-core CPU."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import psycopg
import pytest
from minio import Minio
from prometheus_client.parser import text_string_to_metric_families

from contracts import EVENTS_EXCHANGE, Contract, TrainingRequested
from tests.harness import (
    RABBIT_HOST,
    IsolatedEnv,
    ServiceProcess,
    bfcl_file,
    create_database,
    create_vhost,
    delete_vhost,
    drop_database,
    migrate,
)

pytestmark = pytest.mark.slow

LEASE_TTL_S = 6.0
# Small enough to train in a few steps on a shared CPU: rank 4, one ~200-token example per step.
OPTIONS = {"rank": 4, "alpha": 8, "max_seq_len": 256, "batch_size": 1, "warmup_steps": 0, "learning_rate": 1e-3}


@dataclass(frozen=True)
class TrainerEnv:
    env: dict[str, str]
    broker_url: str
    database_url: str
    bucket: str


@pytest.fixture(scope="module")
def trainer_env(infra: IsolatedEnv, session_tmp: Path) -> Iterator[TrainerEnv]:
    suffix = uuid.uuid4().hex[:8]
    vhost, database = f"{infra.vhost}-trainer-{suffix}", f"{infra.database}_trainer_{suffix}"
    broker_url = f"amqp://guest:guest@{RABBIT_HOST}:5672/{vhost}"
    database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
    bucket = f"tr-{suffix}-{infra.suffix}"
    create_vhost(vhost)
    create_database(database)
    try:
        migrate(database_url)
        env = {
            **infra.env, "BROKER__URL": broker_url, "DATABASE__URL": database_url, "S3__BUCKET": bucket,
            "INSTANCE_ID": "trainer-test",
            "TRAINING__WORK_DIR": str(session_tmp / f"trainer-work-{suffix}"),
            "TRAINING__LEASE_TTL_S": str(LEASE_TTL_S),
            "TRAINING__HEARTBEAT_S": "1",
            "TRAINING__POLL_INTERVAL_S": "0.5",
            "TRAINING__RETRY_DELAY_S": "1",
            "TRAINING__PROGRESS_INTERVAL_S": "0",
        }
        yield TrainerEnv(env, broker_url, database_url, bucket)
    finally:
        delete_vhost(vhost)
        drop_database(database)


@pytest.fixture(scope="module")
def s3(infra: IsolatedEnv, trainer_env: TrainerEnv) -> Minio:
    client = Minio(infra.s3.endpoint, access_key=infra.s3.access_key, secret_key=infra.s3.secret_key, secure=False)
    if not client.bucket_exists(trainer_env.bucket):
        client.make_bucket(trainer_env.bucket)
    return client


@pytest.fixture(scope="module")
def trainer(trainer_env: TrainerEnv, s3: Minio, session_tmp: Path) -> Iterator[ServiceProcess]:
    proc = ServiceProcess("trainer", trainer_env.env, session_tmp / "trainer-service-logs")
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def db(trainer_env: TrainerEnv) -> Iterator[psycopg.Connection]:
    with psycopg.connect(trainer_env.database_url.replace("+asyncpg", ""), autocommit=True) as conn:
        yield conn


@dataclass
class Events:
    """Publishes to the events exchange; a tap queue collects the trainer's events."""

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
async def events(trainer_env: TrainerEnv, trainer: ServiceProcess) -> AsyncIterator[Events]:
    connection = await aio_pika.connect_robust(trainer_env.broker_url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=True)  # declared by the trainer
    tap = Events(exchange)
    queue = await channel.declare_queue(f"test-tap-{uuid.uuid4().hex[:8]}", exclusive=True, auto_delete=True)
    for key in ("training.progress.v1", "training.completed.v1", "training.failed.v1"):
        await queue.bind(exchange, routing_key=key)

    async def on_message(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        tap.received.append((msg.routing_key or "", json.loads(msg.body)))

    await queue.consume(on_message, no_ack=True)
    try:
        yield tap
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def dataset(trainer_env: TrainerEnv, s3: Minio) -> dict[str, str]:
    """The shortest BFCL `simple` conversations (one fits a 256-token row whole) as train/val JSONL."""
    from trainer.training.bfcl_examples import examples_from_file

    records = sorted(examples_from_file(bfcl_file("simple.jsonl")), key=lambda r: len(json.dumps(r)))
    uris = {}
    for name, part in (("train", records[:8]), ("val", records[8:9])):
        data = "".join(json.dumps(r) + "\n" for r in part).encode()
        key = f"datasets/ds-trainer-test/v1/{name}.jsonl"
        s3.put_object(trainer_env.bucket, key, io.BytesIO(data), len(data))
        uris[name] = f"s3://{trainer_env.bucket}/{key}"
    return uris


def training_request(dataset: dict[str, str], *, val: bool, message_id: str | None = None,
                     job_id: str | None = None, **options: Any) -> TrainingRequested:
    job_id = job_id or f"job-{uuid.uuid4().hex[:8]}"
    return TrainingRequested.create(
        correlation_id=f"test-{job_id}", message_id=message_id, job_id=job_id, dataset_id="ds-trainer-test",
        train_uri=dataset["train"], val_uri=dataset["val"] if val else None, base_model="bundled",
        options={**OPTIONS, **options}, requested_by="test",
    )


async def eventually(predicate, timeout: float, what: str) -> Any:
    """Poll a sync predicate without blocking the event loop (the tap consumer runs on it)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if value := predicate():
                return value
        except Exception as exc:  # not there yet (HTTP during a restart, a row not written yet)
            last = exc
        await asyncio.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last!r})" if last else ""))


def job_row(db: psycopg.Connection, job_id: str) -> dict[str, Any] | None:
    cur = db.execute("SELECT * FROM trainer.jobs WHERE job_id = %s", (job_id,))
    row = cur.fetchone()
    return dict(zip([c.name for c in cur.description], row, strict=True)) if row else None


def metric(proc: ServiceProcess, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(httpx.get(proc.url + "/metrics", timeout=5).text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def s3_keys(s3: Minio, bucket: str, prefix: str) -> list[str]:
    return sorted(o.object_name for o in s3.list_objects(bucket, prefix=prefix, recursive=True))


async def test_a_training_request_yields_an_adapter_in_s3_that_peft_loads_and_a_duplicate_is_not_trained(
    trainer: ServiceProcess, trainer_env: TrainerEnv, events: Events, db: psycopg.Connection, s3: Minio,
    dataset: dict[str, str], tmp_path: Path,
) -> None:
    request = training_request(dataset, val=True, max_steps=2, checkpoint_every=1)
    job_id = request.job_id
    await events.publish(request)

    # the job is queued and claimed; while it trains, health and metrics show it
    def training() -> dict[str, Any] | None:
        current = httpx.get(trainer.url + "/health/detailed", timeout=5).json().get("current_job")
        return current if current and current.get("step") else None

    current = await eventually(training, 300, "the first training step")
    assert current["job_id"] == job_id and current["total_steps"] == 2 and current["loss"] is not None
    assert metric(trainer, "trainer_step", job_id=job_id) >= 1
    assert metric(trainer, "trainer_loss", job_id=job_id) > 0
    await events.publish(request)  # a redelivery of the same message while it trains

    completed = await eventually(lambda: events.of("training.completed.v1", job_id), 600, "TrainingCompleted")
    (event,) = completed
    assert event["steps"] == 2 and event["dataset_id"] == "ds-trainer-test" and event["base_model"] == "bundled"
    assert event["envelope"]["causation_id"] == request.envelope.message_id
    assert {"final_loss", "eval_loss", "tokens_per_s", "duration_s", "attempts"} <= set(event["metrics"])
    progress = events.of("training.progress.v1", job_id)
    assert [p["step"] for p in progress] == [1, 2]

    row = job_row(db, job_id)
    assert row["status"] == "completed" and row["attempts"] == 1 and row["steps"] == 2
    assert row["adapter_uri"] == event["adapter_uri"] == f"s3://{trainer_env.bucket}/training/{job_id}/adapter/"
    assert row["last_checkpoint_step"] == 1
    assert s3_keys(s3, trainer_env.bucket, f"training/{job_id}/checkpoints/")  # the step-1 checkpoint
    assert metric(trainer, "trainer_step", job_id=job_id) is None  # per-job series end with the job
    assert metric(trainer, "trainer_training_attempts_total", outcome="completed") == 1.0

    # the adapter in S3 is a peft adapter of the base model
    adapter_dir = tmp_path / "adapter"
    prefix = f"training/{job_id}/adapter/"
    for key in s3_keys(s3, trainer_env.bucket, prefix):
        s3.fget_object(trainer_env.bucket, key, str(adapter_dir / key[len(prefix):]))
    from modelkit.base_model import bundled_gguf_path
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from trainer.training.base_weights import resolve_base_model

    base = AutoModelForCausalLM.from_pretrained(resolve_base_model(bundled_gguf_path()))
    tuned = PeftModel.from_pretrained(base, adapter_dir)
    assert tuned.peft_config["default"].r == 4

    # another request for the same job after it completed: taken in, not trained
    again = training_request(dataset, val=True, job_id=job_id, max_steps=2, checkpoint_every=1)
    await events.publish(again)
    await eventually(
        lambda: db.execute("SELECT 1 FROM trainer.inbox WHERE message_id = %s", (again.envelope.message_id,)).fetchone(),
        30, "the second request in the inbox",
    )
    assert job_row(db, job_id)["attempts"] == 1
    assert len(events.of("training.completed.v1", job_id)) == 1
    assert metric(trainer, "trainer_messages_received_total", type="TrainingRequested") == 1.0
    # The jobs-by-status gauge is refreshed from Postgres every poll interval, not on completion.
    await eventually(lambda: metric(trainer, "trainer_jobs", status="completed") == 1.0, 30,
                     "the jobs gauge counting the completed job")


async def test_a_killed_trainer_is_replaced_and_the_job_resumes_from_its_checkpoint_and_completes_once(
    trainer: ServiceProcess, trainer_env: TrainerEnv, events: Events, db: psycopg.Connection, s3: Minio,
    dataset: dict[str, str],
) -> None:
    request = training_request(dataset, val=False, max_steps=3, checkpoint_every=1)
    job_id = request.job_id
    await events.publish(request)

    def checkpoint_recorded() -> dict[str, Any] | None:
        row = job_row(db, job_id)
        return row if row and row["last_checkpoint_step"] else None

    row = await eventually(checkpoint_recorded, 600, "the first checkpoint in S3")
    assert row["status"] == "running" and row["attempts"] == 1
    checkpoint_prefix = f"training/{job_id}/checkpoints/step-{row['last_checkpoint_step']:06d}/"
    assert row["last_checkpoint_uri"] == f"s3://{trainer_env.bucket}/{checkpoint_prefix}"
    assert f"{checkpoint_prefix}adapter_model.safetensors" in s3_keys(s3, trainer_env.bucket, checkpoint_prefix)

    trainer.kill()  # the service and its training process, mid-run, with no goodbye
    killed_at = datetime.now(UTC)
    resume_step = job_row(db, job_id)["last_checkpoint_step"]  # final now: the dead cannot record another
    trainer.start()  # a new instance: it takes the job over once the dead one's lease expires

    completed = await eventually(lambda: events.of("training.completed.v1", job_id), 600, "TrainingCompleted")
    row = job_row(db, job_id)
    assert row["status"] == "completed" and row["attempts"] == 2 and row["steps"] == 3
    assert completed[0]["steps"] == 3 and completed[0]["metrics"]["attempts"] == 2.0
    # the second attempt started from the checkpoint, not from step 0
    resumed = [p["step"] for p in events.of("training.progress.v1", job_id)
               if datetime.fromisoformat(p["envelope"]["occurred_at"]) > killed_at]
    assert 1 <= resume_step < 3 and resumed == list(range(resume_step + 1, 4))
    assert row["progress"]["start_step"] == resume_step and row["progress"]["attempt"] == 2
    assert f"resumed from step {resume_step}" in trainer.log_text()
    # exactly once: one outbox row (published), one event seen, no failure
    await eventually(
        lambda: db.execute("SELECT count(*) = 1 AND count(published_at) = 1 FROM trainer.outbox "
                           "WHERE body->>'job_id' = %s", (job_id,)).fetchone()[0],
        30, "the outbox row marked published",
    )
    assert len(events.of("training.completed.v1", job_id)) == 1
    assert events.of("training.failed.v1", job_id) == []
