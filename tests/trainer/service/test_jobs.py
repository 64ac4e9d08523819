"""The trainer's job state machine at the service layer, with fakes of its own ports: intake,
claim, heartbeat, completion, failure, retry after a crash, resume, takeover of an expired lease."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from contracts import TrainingCompleted, TrainingFailed, deterministic_id
from trainer.domain import JobStatus
from tests.trainer.service.fakes import FakeResolver, Script
from tests.trainer.service.world import World, make_world


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


async def until(predicate, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


# ------------------------------------------------------------------ intake


async def test_a_request_queues_one_job_and_duplicates_are_no_ops(world: World) -> None:
    trainer = world.instance()
    accept = world.accept(trainer)
    request = world.request()
    same_job_other_message = world.request(job_id=request.job_id)

    assert await accept(request) is True
    assert await accept(request) is False
    assert await accept(same_job_other_message) is False

    assert [r.job.status for r in world.rows()] == [JobStatus.QUEUED]
    assert trainer.metric("trainer_messages_received_total", type="TrainingRequested") == 1.0
    assert trainer.scheduler._wake.is_set()


# ------------------------------------------------------------------ the happy path


async def test_a_claimed_job_trains_uploads_checkpoints_and_adapter_and_completes_once(world: World) -> None:
    trainer = world.instance(Script(total_steps=6, checkpoint_every=2))
    request = world.request()
    await world.queue(request)

    assert await trainer.scheduler.run_once() == "completed"

    job_id = request.job_id
    job = world.job(job_id)
    row = world.row(job_id)
    assert job.status == JobStatus.COMPLETED and job.attempts == 1
    assert row.lease_owner is None and row.steps == 6
    assert row.adapter_uri == f"s3://bucket/training/{job_id}/adapter/"
    assert world.artifacts.keys(f"training/{job_id}/adapter/") == [
        f"training/{job_id}/adapter/adapter_config.json", f"training/{job_id}/adapter/adapter_model.safetensors"]
    # checkpoints went to S3 as they appeared; a superseded one is deleted once the next is recorded
    assert job.last_checkpoint_step == 4
    assert job.last_checkpoint_uri == f"s3://bucket/training/{job_id}/checkpoints/step-000004/"
    assert world.artifacts.deleted == [f"s3://bucket/training/{job_id}/checkpoints/step-000002/"]
    assert world.artifacts.keys(f"training/{job_id}/checkpoints/") == [
        f"training/{job_id}/checkpoints/step-000004/adapter_model.safetensors",
        f"training/{job_id}/checkpoints/step-000004/state.json"]

    (event,) = world.jobs.outbox
    assert world.jobs.published == [event]
    assert isinstance(event, TrainingCompleted)
    assert event.envelope.message_id == deterministic_id("training-completed", job_id)
    assert event.envelope.causation_id == request.envelope.message_id
    assert event.envelope.correlation_id == request.envelope.correlation_id
    assert (event.job_id, event.dataset_id, event.base_model, event.steps) == (job_id, request.dataset_id, "bundled", 6)
    assert event.adapter_uri == row.adapter_uri
    assert event.metrics["final_loss"] == 0.5 and event.metrics["eval_loss"] == 0.7
    assert event.metrics["tokens_per_s"] == 100.0 and event.metrics["attempts"] == 1.0
    assert event.metrics["duration_s"] >= 0

    # the recipe got the data, the resolved base and the request's options
    (spec,) = trainer.launcher.specs
    assert spec.base_model == "/models/bundled.gguf" and spec.resume is True
    assert spec.options == request.options
    assert spec.val_path is not None
    assert not trainer.work_dir.joinpath(job_id).exists()  # scratch removed

    assert trainer.metric("trainer_training_attempts_total", outcome="completed") == 1.0
    assert trainer.metric("trainer_checkpoints_uploaded_total") == 2.0
    assert trainer.metric("trainer_step", job_id=job_id) is None  # the job's series are gone
    assert trainer.run_job.describe() is None


async def test_progress_updates_metrics_and_is_published_at_most_once_per_interval(world: World) -> None:
    hold = asyncio.Event()
    trainer = world.instance(Script(total_steps=6, hold=hold), progress_interval_s=60.0)
    request = world.request()
    await world.queue(request)
    task = asyncio.create_task(trainer.scheduler.run_once())
    await until(lambda: trainer.launcher.processes)
    await until(lambda: trainer.run_job.describe() and trainer.run_job.describe()["phase"] == "training")
    hold.set()
    assert await task == "completed"

    # the clock never moves: the first step, then only the last one
    assert [e.step for e in trainer.progress.events] == [1, 6]
    last = trainer.progress.events[-1]
    assert (last.job_id, last.total_steps, last.loss, last.eta_s) == (request.job_id, 6, 1 / 6, 0.0)
    assert last.envelope.correlation_id == request.envelope.correlation_id


async def test_progress_gauges_and_health_details_follow_the_running_job(world: World) -> None:
    hold = asyncio.Event()
    trainer = world.instance(Script(total_steps=6, hold=hold, pause_after_step=3))
    request = world.request()
    await world.queue(request)
    task = asyncio.create_task(trainer.scheduler.run_once())
    await until(lambda: (trainer.run_job.describe() or {}).get("step") == 3)

    details = trainer.run_job.describe()
    assert (details["job_id"], details["attempt"], details["phase"]) == (request.job_id, 1, "training")
    assert (details["total_steps"], details["loss"], details["eta_s"]) == (6, 1 / 3, 3.0)
    assert details["checkpoint_step"] == 2
    assert trainer.metric("trainer_step", job_id=request.job_id) == 3.0
    assert trainer.metric("trainer_loss", job_id=request.job_id) == pytest.approx(1 / 3)
    assert trainer.metric("trainer_eta_seconds", job_id=request.job_id) == 3.0
    assert trainer.metric("trainer_running_job_info", job_id=request.job_id, dataset_id=request.dataset_id,
                          base_model="bundled") == 1.0
    hold.set()
    assert await task == "completed"
    assert [e.step for e in trainer.progress.events] == [1, 2, 3, 4, 5, 6]  # interval 0: every step
    assert trainer.metric("trainer_progress_events_published_total") == 6.0
    assert trainer.metric("trainer_running_job_info", job_id=request.job_id, dataset_id=request.dataset_id,
                          base_model="bundled") is None


# ------------------------------------------------------------------ leases


async def test_the_lease_is_heartbeated_with_progress_while_the_recipe_runs(world: World) -> None:
    hold = asyncio.Event()
    trainer = world.instance(Script(hold=hold), heartbeat_s=0.01, lease_ttl_s=30.0)
    request = world.request()
    await world.queue(request)
    task = asyncio.create_task(trainer.scheduler.run_once())
    await until(lambda: trainer.launcher.processes)
    claimed_until = world.row(request.job_id).lease_expires_at

    world.clock.advance(20)
    await until(lambda: world.row(request.job_id).lease_expires_at > claimed_until + 19)
    world.clock.advance(20)  # past the first lease's expiry: still ours, because of the heartbeats
    await until(lambda: len(world.jobs.heartbeats) >= 3)
    assert await world.store.claim("trainer-b:1", 30.0) is None
    assert world.row(request.job_id).progress["start_step"] == 0

    hold.set()
    assert await task == "completed"
    assert {owner for _, owner, _ in world.jobs.heartbeats} == {"trainer-a:1"}


async def test_a_live_lease_is_not_claimed_by_another_instance(world: World) -> None:
    await world.queue(world.request())
    assert await world.store.claim("trainer-a:1", 30.0) is not None
    other = world.instance(owner="trainer-b:1")

    assert await other.scheduler.run_once() is None
    assert other.launcher.specs == []


async def test_an_expired_lease_is_taken_over_and_resumes_from_the_recorded_checkpoint(world: World) -> None:
    # trainer A claimed the job, trained past step 2 (its checkpoint is in S3), then died without a word
    request = world.request()
    await world.queue(request)
    prefix = f"training/{request.job_id}/checkpoints/step-000002/"
    assert await world.store.claim("trainer-a:1", 30.0) is not None
    assert await world.store.start_attempt(request.job_id, "trainer-a:1") == 1
    world.artifacts.objects[prefix + "adapter_model.safetensors"] = b"w2"
    world.artifacts.objects[prefix + "state.json"] = b'{"step": 2}'
    assert await world.store.record_checkpoint(request.job_id, "trainer-a:1", 2, world.artifacts.uri(prefix))

    b = world.instance(Script(total_steps=6, checkpoint_every=2), owner="trainer-b:1")
    assert await b.scheduler.run_once() is None  # A's lease is still live
    world.clock.advance(31)
    assert await b.scheduler.run_once() == "completed"

    (proc,) = b.launcher.processes
    assert proc.start_step == 2  # the recipe found the downloaded checkpoint
    assert [e.step for e in b.progress.events] == [3, 4, 5, 6]
    job = world.job(request.job_id)
    assert job.status == JobStatus.COMPLETED and job.attempts == 2
    (event,) = world.jobs.outbox
    assert isinstance(event, TrainingCompleted) and event.steps == 6 and event.metrics["attempts"] == 2.0
    # the resumed run's checkpoint replaced the one it started from
    assert job.last_checkpoint_step == 4
    assert f"s3://bucket/training/{request.job_id}/checkpoints/step-000002/" in world.artifacts.deleted


async def test_a_lost_lease_kills_the_process_and_leaves_the_job_to_its_new_owner(world: World) -> None:
    hold = asyncio.Event()
    a = world.instance(Script(hold=hold), owner="trainer-a:1", heartbeat_s=0.01)
    request = world.request()
    await world.queue(request)
    task = asyncio.create_task(a.scheduler.run_once())
    await until(lambda: a.launcher.processes)

    world.jobs.expire_lease(request.job_id)  # A stalled past its TTL ...
    assert await world.store.claim("trainer-b:1", 30.0) is not None  # ... and B took the job over

    assert await asyncio.wait_for(task, 5) == "lost_lease"
    assert a.launcher.processes[0].killed
    row = world.row(request.job_id)
    assert row.lease_owner == "trainer-b:1" and row.job.status == JobStatus.RUNNING
    assert world.jobs.outbox == []
    assert a.metric("trainer_training_attempts_total", outcome="lost_lease") == 1.0


async def test_stopping_the_service_gives_the_lease_back_at_once_and_refunds_the_attempt(world: World) -> None:
    hold = asyncio.Event()
    trainer = world.instance(Script(hold=hold))
    request = world.request()
    await world.queue(request)
    task = asyncio.create_task(trainer.scheduler.run_once())
    await until(lambda: trainer.launcher.processes)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert trainer.launcher.processes[0].killed
    row = world.row(request.job_id)
    assert (row.lease_owner, row.lease_expires_at, row.job.attempts) == (None, None, 0)
    assert (await world.store.claim("trainer-b:1", 30.0)).job_id == request.job_id
    assert trainer.metric("trainer_training_attempts_total", outcome="stopped") == 1.0


# ------------------------------------------------------------------ failures and retries


async def test_a_failed_line_fails_the_job_for_good(world: World) -> None:
    trainer = world.instance(Script(fail_reason="ValueError: train.jsonl:3: expected an object with a 'messages' list"))
    request = world.request()
    await world.queue(request)

    assert await trainer.scheduler.run_once() == "failed"

    job = world.job(request.job_id)
    assert job.status == JobStatus.FAILED and "expected an object" in job.last_error
    (event,) = world.jobs.published
    assert isinstance(event, TrainingFailed) and event.job_id == request.job_id
    assert event.envelope.message_id == deterministic_id("training-failed", request.job_id)
    assert "expected an object" in event.reason
    world.clock.advance(3600)
    assert await trainer.scheduler.run_once() is None  # never retried


async def test_a_crash_is_retried_after_the_delay_and_resumes_from_the_recorded_checkpoint(world: World) -> None:
    trainer = world.instance(Script(total_steps=6, checkpoint_every=2, crash_after_step=3),
                             Script(total_steps=6, checkpoint_every=2), retry_delay_s=10.0)
    request = world.request()
    await world.queue(request)

    assert await trainer.scheduler.run_once() == "crashed"
    job = world.job(request.job_id)
    assert job.status == JobStatus.RUNNING and job.attempts == 1 and job.last_checkpoint_step == 2
    assert "status -9" in job.last_error
    assert await trainer.scheduler.run_once() is None  # waits out the retry delay
    world.clock.advance(11)
    assert await trainer.scheduler.run_once() == "completed"

    first, second = trainer.launcher.processes
    assert second.start_step == 2
    job = world.job(request.job_id)
    assert job.status == JobStatus.COMPLETED and job.attempts == 2
    assert [type(e) for e in world.jobs.published] == [TrainingCompleted]
    assert trainer.metric("trainer_training_attempts_total", outcome="crashed") == 1.0


async def test_a_job_that_keeps_crashing_fails_after_max_attempts(world: World) -> None:
    trainer = world.instance(Script(crash_after_step=1), Script(crash_after_step=1), max_attempts=2,
                             retry_delay_s=0.0)
    request = world.request()
    await world.queue(request)

    assert await trainer.scheduler.run_once() == "crashed"
    assert await trainer.scheduler.run_once() == "failed"

    job = world.job(request.job_id)
    assert job.status == JobStatus.FAILED and job.attempts == 2
    (event,) = world.jobs.published
    assert isinstance(event, TrainingFailed) and "gave up after 2 attempts" in event.reason


async def test_a_job_whose_trainer_died_on_its_last_attempt_fails_without_another_run(world: World) -> None:
    request = world.request()
    await world.queue(request)
    assert await world.store.claim("trainer-dead:1", 30.0) is not None
    world.jobs.rows[request.job_id].update(attempts=3, last_error=None)
    world.jobs.expire_lease(request.job_id)
    trainer = world.instance(max_attempts=3)

    assert await trainer.scheduler.run_once() == "failed"

    assert trainer.launcher.specs == []
    (event,) = world.jobs.published
    assert "gave up after 3 attempts" in event.reason


async def test_an_unknown_base_model_fails_the_job_without_starting_training(world: World) -> None:
    trainer = world.instance(resolver=FakeResolver({}))
    request = world.request(base_model="llama-70b")
    await world.queue(request)

    assert await trainer.scheduler.run_once() == "failed"

    assert trainer.launcher.specs == []
    (event,) = world.jobs.published
    assert isinstance(event, TrainingFailed) and "llama-70b" in event.reason


async def test_a_missing_dataset_fails_the_job(world: World) -> None:
    trainer = world.instance()
    request = world.request(with_data=False)
    await world.queue(request)

    assert await trainer.scheduler.run_once() == "failed"

    assert trainer.launcher.specs == []
    assert "does not exist" in world.job(request.job_id).last_error


async def test_the_background_loop_runs_queued_jobs_one_after_another(world: World) -> None:
    trainer = world.instance(Script(total_steps=2), Script(total_steps=2))
    first, second = world.request(), world.request()
    await world.queue(first)
    await world.queue(second)
    loop = asyncio.create_task(trainer.scheduler.run())
    try:
        await until(lambda: len(world.jobs.published) == 2)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)

    assert [e.job_id for e in world.jobs.published] == [first.job_id, second.job_id]
    await trainer.scheduler.refresh_counts()
    assert trainer.metric("trainer_jobs", status="completed") == 2.0
    assert trainer.metric("trainer_jobs", status="queued") == 0.0
