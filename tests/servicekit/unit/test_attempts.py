"""servicekit.attempts: the ladder that ends one attempt at a leased job, on a fake store (our own port)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pydantic import BaseModel

from servicekit.attempts import Attempt, AttemptRunner, JobError, PermanentJobError, fresh_workdir
from servicekit.logs import correlation_id


@dataclass(frozen=True)
class Terms:
    owner: str = "svc-a:1"
    lease_ttl_s: float = 30.0
    heartbeat_s: float = 0.01
    max_attempts: int = 3
    retry_delay_s: float = 5.0


@dataclass
class State:
    attempt: int = 0
    settled: bool = False
    lease_lost: bool = False

    def describe(self) -> dict:
        return {"attempt": self.attempt}


@dataclass
class Store:
    attempts: int = 0
    leased: bool = True
    releases: list[dict] = field(default_factory=list)

    async def start_attempt(self, job_id: str, owner: str) -> int | None:
        if not self.leased:
            return None
        self.attempts += 1
        return self.attempts

    async def release(self, job_id: str, owner: str, *, error: str | None, retry_after_s: float,
                      refund_attempt: bool) -> bool:
        self.releases.append({"error": error, "retry_after_s": retry_after_s, "refund": refund_attempt})
        if refund_attempt:
            self.attempts = max(self.attempts - 1, 0)
        return True


class Process:
    def __init__(self, *lines: dict, status: int = -9) -> None:
        self.killed = False
        self._lines = lines
        self.status = status

    async def kill(self) -> None:
        self.killed = True

    def stderr_tail(self) -> str:
        return "Traceback...\nMemoryError"

    async def lines(self):
        for line in self._lines:
            yield line

    async def wait(self) -> int:
        return self.status


class Harness:
    def __init__(self, tmp_path: Path, *, attempts_so_far: int = 0, heartbeat: bool = True) -> None:
        self.store = Store(attempts=attempts_so_far)
        self.state = State(attempt=attempts_so_far)
        self.failed: list[str] = []
        self.fail_result = True
        self.held = heartbeat
        self.workdir = tmp_path / "job"
        self.workdir.mkdir(parents=True)
        self.runner = AttemptRunner(self.store, Terms(), what="test job", kind="test", stopped_by="tester",
                                    logger=logging.getLogger("test.attempts"))

    async def heartbeat(self) -> bool:
        return self.held

    async def fail(self, reason: str) -> bool:
        self.failed.append(reason)
        return self.fail_result

    async def run(self, work, **kw) -> str:
        return await self.runner.run("j1", self.state, correlation="corr-1", last_error="boom before",
                                     heartbeat=self.heartbeat, work=work, fail=self.fail, workdir=self.workdir, **kw)


async def test_a_finished_attempt_returns_the_works_outcome_and_cleans_up(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    proc = Process()

    async def work(a: Attempt) -> str:
        assert await a.begin() == 1
        a.process = proc
        h.state.settled = True
        return "completed"

    assert await h.run(work) == "completed"
    assert h.state.attempt == 1 and proc.killed and not h.workdir.exists()
    assert h.store.releases == [] and h.failed == []


async def test_a_transient_error_gives_the_job_back_until_the_last_attempt_then_fails_it(tmp_path: Path) -> None:
    async def crash(a: Attempt) -> str:
        await a.begin()
        a.process = Process()
        raise JobError("the process exited with status -9")

    h = Harness(tmp_path)
    assert await h.run(crash) == "crashed"
    assert h.store.releases == [{"error": "the process exited with status -9", "retry_after_s": 5.0, "refund": False}]
    assert h.failed == [] and h.state.settled

    last = Harness(tmp_path / "2", attempts_so_far=2)
    assert await last.run(crash) == "failed"
    assert last.failed == ["the process exited with status -9 (gave up after 3 attempts)"]
    assert last.store.releases == []


async def test_a_permanent_error_fails_at_once_and_a_lost_lease_during_fail_says_so(tmp_path: Path) -> None:
    async def bad(a: Attempt) -> str:
        raise PermanentJobError("unknown base model 'x'")

    h = Harness(tmp_path)
    assert await h.run(bad) == "failed"
    assert h.failed == ["unknown base model 'x'"] and h.store.attempts == 0

    h2 = Harness(tmp_path / "b")
    h2.fail_result = False
    assert await h2.run(bad) == "lost_lease"


async def test_a_job_claimed_after_its_last_attempt_fails_without_running(tmp_path: Path) -> None:
    ran = False

    async def work(a: Attempt) -> str:
        nonlocal ran
        ran = True
        return "completed"

    h = Harness(tmp_path, attempts_so_far=3)
    assert await h.run(work) == "failed"
    assert not ran and h.failed == ["gave up after 3 attempts; last error: boom before"]


async def test_an_unexpected_error_releases_the_lease_for_a_retry(tmp_path: Path) -> None:
    proc = Process()

    async def work(a: Attempt) -> str:
        await a.begin()
        a.process = proc
        raise ConnectionError("S3 is away")

    h = Harness(tmp_path)
    assert await h.run(work) == "error"
    assert proc.killed and h.store.releases == [
        {"error": "ConnectionError: S3 is away", "retry_after_s": 5.0, "refund": False}]


async def test_a_lease_taken_over_leaves_the_job_and_its_directory_alone(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.store.leased = False

    async def work(a: Attempt) -> str:
        await a.begin()
        return "completed"

    assert await h.run(work) == "lost_lease"
    assert h.state.lease_lost and h.workdir.exists() and h.store.releases == []


async def test_a_lease_lost_while_working_stops_the_work(tmp_path: Path) -> None:
    h = Harness(tmp_path, heartbeat=False)
    stopped = asyncio.Event()

    async def work(a: Attempt) -> str:
        await a.begin()
        await asyncio.Event().wait()
        return "completed"

    assert await asyncio.wait_for(h.run(work, stop=stopped.set), 5) == "lost_lease"
    assert stopped.is_set() and h.state.lease_lost and h.store.releases == []


class Halted(Exception):
    pass


async def test_a_stopping_service_kills_the_process_and_refunds_only_a_counted_attempt(tmp_path: Path) -> None:
    proc = Process()

    async def counted(a: Attempt) -> str:
        await a.begin()
        a.process = proc
        raise Halted

    h = Harness(tmp_path)
    with pytest.raises(asyncio.CancelledError):
        await h.run(counted, stop_errors=(Halted,))
    assert proc.killed and h.store.attempts == 0
    assert h.store.releases == [{"error": None, "retry_after_s": 0, "refund": True}]

    async def not_counted(a: Attempt) -> str:
        raise Halted

    h2 = Harness(tmp_path / "c", attempts_so_far=1)
    with pytest.raises(asyncio.CancelledError):
        await h2.run(not_counted, stop_errors=(Halted,))
    assert h2.store.attempts == 1 and h2.store.releases == [{"error": None, "retry_after_s": 0, "refund": False}]


async def test_while_an_attempt_runs_it_is_current_and_its_log_lines_carry_the_jobs_correlation_id(
        tmp_path: Path) -> None:
    h = Harness(tmp_path)
    seen: list = []
    ended: list[str] = []

    async def work(a: Attempt) -> str:
        await a.begin()
        seen.append((correlation_id.get(), h.runner.describe()))
        h.state.settled = True
        return "completed"

    assert h.runner.describe() is None
    assert await h.run(work, ended=ended.append) == "completed"
    assert seen == [("corr-1", {"attempt": 1})]
    assert h.runner.describe() is None and correlation_id.get() != "corr-1" and ended == ["completed"]


@dataclass(frozen=True)
class Step:
    n: int


@dataclass(frozen=True)
class Done:
    value: str


def parse(doc: dict) -> Step | Done:
    return Done(doc["done"]) if "done" in doc else Step(int(doc["step"]))


async def test_follow_hands_each_event_on_skips_a_malformed_line_and_returns_the_result(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    proc = Process({"step": 1}, {"nonsense": True}, {"step": "two"}, {"step": 2}, {"done": "adapter"}, status=0)
    handled: list = []

    async def handle(event) -> None:
        handled.append(event)

    async def work(a: Attempt) -> str:
        await a.begin()
        result = await a.follow(proc, parse, handle, (Done,), name="test", logger=logging.getLogger("t"))
        assert result == Done("adapter") and a.process is proc
        h.state.settled = True
        return "completed"

    assert await h.run(work) == "completed"
    assert handled == [Step(1), Step(2)] and proc.killed


async def test_a_process_that_exits_without_a_result_is_a_crash_with_its_last_stderr_line(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def work(a: Attempt) -> str:
        await a.begin()
        await a.follow(Process({"step": 1}, status=-9), parse, lambda e: asyncio.sleep(0), (Done,), name="test",
                       logger=logging.getLogger("t"))
        return "completed"

    assert await h.run(work) == "crashed"
    assert h.store.releases == [{"error": "the test process exited with status -9 without a result: MemoryError",
                                 "retry_after_s": 5.0, "refund": False}]


class Spec(BaseModel):
    name: str


async def test_fresh_workdir_empties_what_a_previous_attempt_left_and_writes_the_spec(tmp_path: Path) -> None:
    workdir = tmp_path / "job"
    (workdir / "stale").mkdir(parents=True)
    (workdir / "stale" / "x.bin").write_bytes(b"old")
    config = await fresh_workdir(workdir, Spec(name="j1"))
    assert config == workdir / "job.json" and sorted(p.name for p in workdir.iterdir()) == ["job.json"]
    assert Spec.model_validate_json(config.read_text()) == Spec(name="j1")
