"""servicekit.jobs.JobIntake: a request becomes a queued job once; duplicates are ignored."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter

from contracts import TrainingRequested
from servicekit.jobs import JobIntake


def request(message_id: str) -> TrainingRequested:
    return TrainingRequested.create(correlation_id="c1", message_id=message_id, job_id="j1", dataset_id="d1",
                                    train_uri="s3://b/train.jsonl", base_model="bundled", options={})


async def test_a_first_delivery_is_counted_logged_and_wakes_the_scheduler_and_a_duplicate_is_not(caplog) -> None:
    registry = CollectorRegistry()
    received = Counter("test_received", "first deliveries", ["type"], registry=registry)
    woken: list[int] = []
    intake = JobIntake(received, lambda: woken.append(1), logging.getLogger("test.intake"))
    seen: set[str] = set()

    async def accept(msg: TrainingRequested) -> bool:
        first = msg.job_id not in seen
        seen.add(msg.job_id)
        return first

    caplog.set_level(logging.INFO, logger="test.intake")
    first, again = request("m1"), request("m2")
    assert await intake.take(first, accept(first), "job j1 queued", job_id="j1") is True
    assert await intake.take(again, accept(again), "job j1 queued", job_id="j1") is False
    assert woken == [1]
    assert registry.get_sample_value("test_received_total", {"type": first.envelope.message_type}) == 1.0
    assert [r.getMessage() for r in caplog.records] == ["job j1 queued", "duplicate delivery ignored"]
