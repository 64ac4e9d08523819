"""One attempt at a leased job, and what ends it: the ladder the trainer, exporter and evaluator share.

The service's own work (a linear recipe) runs under the lease (`servicekit.lease`). How it ends
decides what happens to the job:
- the work returns an outcome: that is the attempt's outcome (the work settled the job itself).
- `JobError` with `permanent`, or a transient one on the last allowed attempt: the job fails for
  good through the service's `fail(reason)` (its failure event, in the outbox).
- a transient `JobError` (the process crashed): the lease is given back and the job retried after
  `retry_delay_s`.
- `LeaseLostError`, or the lease lost while working: the job is left to its new owner, untouched.
- the service stops (cancelled, or one of `stop_errors`): the process is killed, the lease given
  back at once, and the attempt refunded if it was counted.
- anything else (S3 or Postgres trouble, a bug): the process is killed, the lease given back and
  the job retried after the delay.
A job claimed again after `max_attempts` counted attempts fails without running.
The attempt's process (if the work started one) is killed and its work directory removed at the end,
except after a takeover, when the directory may be the new owner's.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from .lease import Heartbeat, LeaseKeeper, run_under_lease
from .logs import correlation_id, log_fields

MAX_REASON_CHARS = 2000


class JobError(Exception):
    """An attempt ended for a known reason. `permanent`: retrying cannot help."""

    permanent = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PermanentJobError(JobError):
    permanent = True


class LeaseLostError(Exception):
    """Another instance owns the job now (our lease expired): stop without touching it."""


class LeaseTerms(Protocol):
    """The lease fields of a service's policy (its settings' `lease` values)."""

    @property
    def owner(self) -> str: ...
    @property
    def lease_ttl_s(self) -> float: ...
    @property
    def heartbeat_s(self) -> float: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def retry_delay_s(self) -> float: ...


class AttemptStore(Protocol):
    """What the ladder writes to a service's job store."""

    async def start_attempt(self, job_id: str, owner: str) -> int | None: ...

    async def release(self, job_id: str, owner: str, *, error: str | None, retry_after_s: float,
                      refund_attempt: bool) -> bool: ...


class AttemptState(Protocol):
    """The service's view of the running attempt (what /health/detailed shows)."""

    attempt: int  # attempts counted so far; this attempt's number once `begin()` counted it
    settled: bool  # the job's outcome (or its release) is written: no more heartbeats
    lease_lost: bool

    def describe(self) -> dict[str, Any]: ...


class JobProcess(Protocol):
    async def kill(self) -> None: ...
    def stderr_tail(self) -> str: ...


class FollowedProcess(JobProcess, Protocol):
    """A job's subprocess that reports on stdout in JSON lines."""

    def lines(self) -> AsyncIterator[dict[str, Any]]: ...
    async def wait(self) -> int: ...


class Attempt:
    """Handed to the work: `begin()` counts the attempt (LeaseLostError when the lease is gone);
    `process` is the subprocess to kill when the attempt ends, if the work starts one."""

    def __init__(self, store: AttemptStore, owner: str, job_id: str, state: AttemptState) -> None:
        self._store = store
        self._owner = owner
        self.job_id = job_id
        self.state = state
        self.started = False
        self.process: JobProcess | None = None

    async def begin(self) -> int:
        number = await self._store.start_attempt(self.job_id, self._owner)
        if number is None:
            raise LeaseLostError(self.job_id)
        self.state.attempt, self.started = number, True
        return number

    async def follow(self, process: FollowedProcess, parse: Callable[[dict[str, Any]], Any],
                     handle: Callable[[Any], Awaitable[None]], final: tuple[type, ...], *, name: str,
                     logger: logging.Logger) -> Any:
        """The process's JSON lines to its result (an instance of one of `final`); every other event goes
        to `handle`, a malformed line is logged and skipped. The process is this attempt's (killed when
        it ends). One that exits without a result is a crash (a transient JobError), its stderr's last
        line in the reason."""
        self.process = process
        result = None
        async for doc in process.lines():
            try:
                event = parse(doc)
            except (KeyError, TypeError, ValueError):
                logger.warning("malformed event from the %s process ignored: %.300s", name, doc,
                               extra=log_fields(job_id=self.job_id))
                continue
            if isinstance(event, final):
                result = event
            else:
                await handle(event)
        status = await process.wait()
        if result is None:
            last = last_line(process.stderr_tail())
            raise JobError(f"the {name} process exited with status {status} without a result"
                           + (f": {last}" if last else ""))
        return result


async def fresh_workdir(workdir: Path, spec: BaseModel) -> Path:
    """The attempt's work directory, emptied of what a previous attempt left (stale), with the job's
    spec for its subprocess written to `job.json`; the spec's path."""
    await asyncio.to_thread(shutil.rmtree, workdir, True)
    workdir.mkdir(parents=True)
    config = workdir / "job.json"
    config.write_text(spec.model_dump_json(indent=2))
    return config


class AttemptRunner:
    """Runs one attempt of a claimed job under its lease; `what` names the jobs in log lines
    ("training job"), `kind` the asyncio tasks, `stopped_by` the one who stops between attempts."""

    def __init__(self, store: AttemptStore, terms: LeaseTerms, *, what: str, kind: str, stopped_by: str,
                 logger: logging.Logger, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.terms = terms
        self.what = what
        self.kind = kind
        self.stopped_by = stopped_by
        self.logger = logger
        self.clock = clock
        self.current: AttemptState | None = None  # the running attempt's state

    def describe(self) -> dict[str, Any] | None:
        """The running attempt as /health/detailed shows it; None between jobs."""
        return self.current.describe() if self.current else None

    async def run(self, job_id: str, state: AttemptState, *, correlation: str, last_error: str | None,
                  heartbeat: Heartbeat, work: Callable[[Attempt], Awaitable[str]],
                  fail: Callable[[str], Awaitable[bool]], workdir: Path | None = None,
                  stop: Callable[[], None] = lambda: None, stop_errors: tuple[type[BaseException], ...] = (),
                  ended: Callable[[str], None] = lambda outcome: None, **fields: Any) -> str:
        """The attempt's outcome: completed (or what `work` returned), failed, crashed, lost_lease or
        error; a stop is raised as CancelledError (outcome `stopped`). `state.attempt` holds the
        attempts counted so far when called; it is `current` while the attempt runs, and every log
        line meanwhile carries the job's `correlation` id. `fail(reason)` writes the job's failure
        (False: the lease was lost meanwhile); the runner marks the state settled before calling it.
        `ended(outcome)` runs last (the service's metrics), then the attempt's end is logged with `fields`."""
        t = self.terms
        keeper = LeaseKeeper(heartbeat, what=f"{self.what} {job_id}", ttl_s=t.lease_ttl_s, interval_s=t.heartbeat_s,
                             active=lambda: not state.settled, clock=self.clock)
        attempt = Attempt(self.store, t.owner, job_id, state)
        token = correlation_id.set(correlation)
        self.current = state
        outcome = "error"
        try:
            ladder = self._ladder(attempt, last_error, work, fail, workdir, stop, stop_errors)
            outcome = await run_under_lease(ladder, keeper, state, job_id=job_id, kind=self.kind, stop=stop)
        except asyncio.CancelledError:
            outcome = "stopped"
            raise
        finally:
            self.current = None
            ended(outcome)
            self.logger.info("%s %s attempt %d ended: %s", self.what, job_id, state.attempt, outcome,
                             extra=log_fields(job_id=job_id, outcome=outcome, **fields))
            correlation_id.reset(token)
        return outcome

    async def _ladder(self, attempt: Attempt, last_error: str | None, work: Callable[[Attempt], Awaitable[str]],
                      fail: Callable[[str], Awaitable[bool]], workdir: Path | None, stop: Callable[[], None],
                      stop_errors: tuple[type[BaseException], ...]) -> str:
        state, t, job_id = attempt.state, self.terms, attempt.job_id
        try:
            if state.attempt >= t.max_attempts:
                raise PermanentJobError(f"gave up after {state.attempt} attempts; last error: "
                                        f"{last_error or f'the {self.stopped_by} stopped'}")
            return await work(attempt)
        except LeaseLostError:
            state.lease_lost = True
            return "lost_lease"
        except JobError as exc:
            if attempt.process is not None:
                self._log_stderr(job_id, attempt.process)
            return await self._settle(attempt, exc, fail)
        except (asyncio.CancelledError, *stop_errors):
            stop()
            if attempt.process is not None:
                await attempt.process.kill()  # before the lease goes back: nothing may write for this job any more
            if not state.lease_lost and not state.settled:
                state.settled = True  # our own shutdown: the attempt does not count
                await self.store.release(job_id, t.owner, error=None, retry_after_s=0, refund_attempt=attempt.started)
            raise asyncio.CancelledError from None
        except Exception as exc:  # S3 or Postgres trouble (or a bug): the job goes back and is retried
            self.logger.exception("%s %s attempt failed; retrying in %.0fs", self.what, job_id, t.retry_delay_s,
                                  extra=log_fields(job_id=job_id))
            if attempt.process is not None:
                await attempt.process.kill()
            if not state.settled:
                state.settled = True
                await self.store.release(job_id, t.owner, error=reason_of(exc), retry_after_s=t.retry_delay_s,
                                         refund_attempt=False)
            return "error"
        finally:
            if attempt.process is not None:
                await attempt.process.kill()
            if workdir is not None and not state.lease_lost:  # after a takeover it may be the new owner's
                await asyncio.to_thread(shutil.rmtree, workdir, True)

    async def _settle(self, attempt: Attempt, exc: JobError, fail: Callable[[str], Awaitable[bool]]) -> str:
        """A failed attempt: fail the job for good, or give it back for another attempt."""
        state, t, job_id = attempt.state, self.terms, attempt.job_id
        reason = exc.reason
        if not exc.permanent:
            if state.attempt < t.max_attempts:
                self.logger.warning("%s %s attempt %d crashed (%s); retrying in %.0fs", self.what, job_id,
                                    state.attempt, reason, t.retry_delay_s, extra=log_fields(job_id=job_id))
                state.settled = True
                await self.store.release(job_id, t.owner, error=reason, retry_after_s=t.retry_delay_s,
                                         refund_attempt=False)
                return "crashed"
            reason = f"{reason} (gave up after {state.attempt} attempts)"
        state.settled = True
        if not await fail(reason[:MAX_REASON_CHARS]):
            return "lost_lease"
        self.logger.error("%s %s failed: %s", self.what, job_id, reason, extra=log_fields(job_id=job_id))
        return "failed"

    def _log_stderr(self, job_id: str, process: JobProcess) -> None:
        tail = process.stderr_tail()
        if tail:
            self.logger.warning("stderr of %s %s's process (tail):\n%s", self.what, job_id, tail,
                                extra=log_fields(job_id=job_id))


def reason_of(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]


def last_line(text: str) -> str:
    """The last non-blank line of a process's stderr, for a crash's reason."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""
