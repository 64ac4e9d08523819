"""`agentloop retrain --follow` on a real RabbitMQ: the events of one retrain (published here as the
log-miner and trainer publish them) drive its stage lines and its bar of training steps, events of
another retrain are ignored, and a failed training ends it with exit code 1."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import aio_pika
import pytest

from agentloop_cli.commands.retrain import _follow
from contracts import (
    EVENTS_EXCHANGE,
    Contract,
    DatasetBuilt,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
)
from tests.harness import IsolatedEnv, create_vhost, delete_vhost

REQUEST = "req-follow-1"


@pytest.fixture
def broker_url(infra: IsolatedEnv) -> Iterator[str]:
    """A vhost of its own: the TrainingRequested published here must reach no trainer of the session."""
    vhost = f"{infra.vhost}-follow-{uuid.uuid4().hex[:6]}"
    create_vhost(vhost)
    try:
        yield infra.broker_url.rsplit("/", 1)[0] + "/" + vhost
    finally:
        delete_vhost(vhost)


async def _publish(broker_url: str, messages: list[Contract]) -> None:
    connection = await aio_pika.connect_robust(broker_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        for msg in messages:
            await exchange.publish(aio_pika.Message(json.dumps(msg.model_dump(mode="json")).encode(),
                                                    content_type="application/json"), routing_key=msg.routing_key)
            await asyncio.sleep(0.05)
    finally:
        await connection.close()


def _retrain_events(correlation: str, job: str) -> list[Contract]:
    dataset = f"ds-{job}"
    return [
        DatasetBuilt.create(correlation_id=correlation, dataset_id=dataset, version=7, train_uri="s3://b/t.jsonl",
                            val_uri="s3://b/v.jsonl", manifest_uri="s3://b/m.json", counts={"train": 40, "val": 4}),
        TrainingRequested.create(correlation_id=correlation, job_id=job, dataset_id=dataset,
                                 train_uri="s3://b/t.jsonl", base_model="gemma3-270m"),
        *[TrainingProgress.create(correlation_id=correlation, job_id=job, step=s, total_steps=3, loss=1.0 / s,
                                  learning_rate=1e-3, eta_s=10.0 * (3 - s)) for s in (1, 2, 3)],
        TrainingFailed.create(correlation_id=correlation, job_id=job, reason="out of memory at step 3"),
    ]


async def test_follow_shows_the_retrain_by_its_events_and_fails_with_its_training(broker_url: str, capsys,
                                                                                 monkeypatch) -> None:
    monkeypatch.setenv("BROKER__URL", broker_url)
    requested = asyncio.Event()

    def request() -> str:  # the gateway's answer; the feed is listening before it is asked
        requested.set()
        return REQUEST

    async def events() -> None:
        await requested.wait()
        await asyncio.sleep(0.3)
        others = _retrain_events("someone-else", "job-other")[:2]  # another retrain's: not ours
        await _publish(broker_url, others + _retrain_events(REQUEST, "job-ours"))

    code, _ = await asyncio.gather(_follow(request, timeout_s=60), events())
    err = capsys.readouterr().err
    assert code == 1
    assert "dataset: dataset ds-job-o" in err and "40 train / 4 val" in err
    assert "training job job-ours requested" in err and "job-other" not in err
    assert "retrain failed: training failed: out of memory at step 3" in err
    assert "3/3" in err and "loss 0.333" in err  # the bar as it ended: step 3 of 3 with its loss


async def test_follow_gives_up_at_its_time_limit(broker_url: str, capsys, monkeypatch) -> None:
    monkeypatch.setenv("BROKER__URL", broker_url)
    assert await _follow(lambda: "req-nothing-follows", timeout_s=2) == 1
    assert "retrain not deployed within 2 s" in capsys.readouterr().err
