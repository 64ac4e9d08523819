"""The closed loop, driven from outside as a client and an operator would drive it.

    held-out replay on production ("before") → traffic through the gateway → feedback
    (accept correct calls, correct the others) → retrain (operator route) → follow the events:
    dataset, training, export, evaluation, promotion, deployment → the runner serves the new
    version → held-out replay again ("after") → before/after table.

Nothing here starts services: the stack must be up (`make demo` starts it first). The only
channels used are the gateway's HTTP API, the events exchange (a private queue) and the
local services' health/metrics endpoints.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.live import Live

from .board import StageBoard
from .events import EventFeed, LoopFailedError, LoopTracker
from .gateway import DemoGateway, GatewayCallError, miner_intake, runner_details
from .judge import Checker, check, feedback_for, response_of
from .report import Outcome, Summary, comparison_table, stage_table, summarise
from .tasks import Split, Task, load_tasks, split, validation_test

# Training suited to a short CPU run: a high learning rate teaches the call format in a few
# dozen steps; one packed row per step keeps a step to seconds on 2 cores.
DEMO_TRAINING: dict[str, Any] = {
    "max_steps": 28, "learning_rate": 1e-3, "lr_schedule": "constant", "warmup_steps": 2, "batch_size": 1,
    "max_seq_len": 1024, "rank": 16, "alpha": 32, "checkpoint_every": 1000,
}

STAGES = [
    ("stack", "stack ready"),
    ("before", "held-out replay on production (before)"),
    ("traffic", "traffic through the gateway"),
    ("feedback", "user feedback"),
    ("dataset", "retrain → dataset"),
    ("training", "training (LoRA)"),
    ("export", "export (GGUF, quants, registry)"),
    ("evaluation", "evaluation (gate)"),
    ("promotion", "promotion → deployment"),
    ("reload", "runner serves the new version"),
    ("after", "held-out replay on the new model (after)"),
]
FOLLOW_STAGES = ("dataset", "training", "export", "evaluation", "promotion")


@dataclass(frozen=True)
class LoopConfig:
    gateway_url: str
    broker_url: str
    runner_url: str
    miner_url: str
    api_key: str | None = None
    token: str | None = None
    tasks_file: Path | None = None
    traffic: int | None = None
    heldout: int | None = None
    concurrency: int = 2
    max_tokens: int = 96  # two calls of a parallel turn need ~70 tokens
    heldout_part: str = "all"  # all | val | test: which half of the held-out part is replayed and judged
    groupthink: int | None = None  # GroupThink samples for the held-out replays (None: greedy)
    constrained: str | None = None  # auto | off for every run; None: the engine's setting
    val_fraction: float = 0.0  # of the mined dataset, for the evaluator's dataset-val suite (EVAL__PRIMARY)
    shape_weights: dict[str, float] = field(default_factory=dict)  # DatasetOptions.shape_weights; {}: the miner's
    run_timeout_s: float = 180.0
    training: dict[str, Any] = field(default_factory=lambda: dict(DEMO_TRAINING))
    reason: str = "agentloop loop: demo of the closed loop"
    follow_timeout_s: float = 45 * 60
    quiet_timeout_s: float = 20 * 60  # no event of ours for this long: something is stuck
    reload_timeout_s: float = 300.0
    settle_timeout_s: float = 60.0
    report_path: Path | None = None


@dataclass
class LoopResult:
    ok: bool
    reason: str = ""
    request_id: str | None = None
    tracker: LoopTracker | None = None
    before: list[Outcome] = field(default_factory=list)
    traffic: list[Outcome] = field(default_factory=list)
    after: list[Outcome] = field(default_factory=list)
    stages: list[tuple[str, float | None, str]] = field(default_factory=list)
    started_at: str = ""


def run_request(task: Task, cfg: LoopConfig, *, groupthink: int | None = None) -> dict[str, Any]:
    """The task's client-side run (`Task.client_run`) with the loop's bounds."""
    return task.client_run(max_tokens=cfg.max_tokens, timeout_s=cfg.run_timeout_s, constrained=cfg.constrained,
                           groupthink=groupthink)


def dispatch_order(tasks: Sequence[Task]) -> list[Task]:
    """Tasks offering the same tools one after another: the engine then reuses the prompt's
    cached prefix (instructions + tool schemas) instead of reading it again."""
    return sorted(tasks, key=lambda t: json.dumps([f["name"] for f in t.function]))


class HttpProbes:
    """The local services' health and metrics the loop reads (the runner's served version, the
    log-miner's intake counts)."""

    def __init__(self, cfg: LoopConfig) -> None:
        self.cfg = cfg

    async def runner_details(self) -> dict[str, Any] | None:
        return await runner_details(self.cfg.runner_url)

    async def miner_intake(self) -> dict[str, int] | None:
        return await miner_intake(self.cfg.miner_url)

    async def gateway_ready(self) -> tuple[int, str]:
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                resp = await http.get(f"{self.cfg.gateway_url}/health/ready")
        except httpx.HTTPError as exc:
            raise LoopFailedError(f"the gateway at {self.cfg.gateway_url} is not reachable ({exc!r}); "
                                  "start the stack first: make up") from None
        return resp.status_code, resp.text[:300]


class ClosedLoop:
    """The flow over three ports: the gateway (`DemoGateway`), the event feed (`EventFeed`) and
    the probes (`HttpProbes`); tests hand in fakes of them."""

    def __init__(self, cfg: LoopConfig, console: Console, *, checker: Checker | None = None,
                 gateway: Any = None, feed: Any = None, probes: Any = None) -> None:
        self.cfg = cfg
        self.console = console
        self.checker = checker or check
        self.board = StageBoard(STAGES, console)
        self.gateway = gateway or DemoGateway(cfg.gateway_url, api_key=cfg.api_key, token=cfg.token)
        self.feed = feed or EventFeed(cfg.broker_url)
        self.probes = probes or HttpProbes(cfg)
        self.result = LoopResult(ok=False, started_at=datetime.now(UTC).isoformat())

    # ------------------------------------------------------------------ stages

    async def check_stack(self) -> None:
        b = self.board
        b.start("stack", self.cfg.gateway_url)
        code, text = await self.probes.gateway_ready()
        if code != 200:
            raise LoopFailedError(f"the gateway is not ready ({code}): {text}")
        try:
            await self.gateway.token()
            models = await self.gateway.models()
        except GatewayCallError as exc:
            raise LoopFailedError(str(exc)) from None
        details = await self.probes.runner_details()
        serving = details.get("model_version") if details else None
        production = _production_of(models)
        b.done("stack", f"runner serves {serving or '?'}" + (f", production {production}" if production else ""))

    async def replay(self, key: str, tasks: Sequence[Task], concurrency: int = 1,
                     groupthink: int | None = None) -> list[Outcome]:
        """Every task through the gateway, each run judged. The held-out replays go one at a time,
        so their latencies are the model's and not time spent queueing behind each other."""
        b = self.board
        b.start(key, f"{len(tasks)} tasks, {concurrency} at a time"
                     + (f", GroupThink {groupthink} samples" if groupthink else ""))
        sem = asyncio.Semaphore(concurrency)
        results: dict[str, Outcome] = {}
        correct = 0

        async def one(task: Task) -> None:
            nonlocal correct
            async with sem:
                t0 = time.monotonic()
                try:
                    run = await self.gateway.run(run_request(task, self.cfg, groupthink=groupthink),
                                                 wait_s=self.cfg.run_timeout_s)
                except GatewayCallError as exc:
                    raise LoopFailedError(f"task {task.id}: {exc}") from None
                latency = time.monotonic() - t0
            response = response_of(run)
            verdict = self.checker(task, response.calls)
            results[task.id] = Outcome(task, run.get("run_id"), response, verdict, latency)
            correct += int(verdict.correct)
            b.update(key, f"{len(results)}/{len(tasks)} runs, {correct} correct "
                          f"(last: {task.id} {'✓' if verdict.correct else '✗ ' + verdict.reason} {latency:.1f} s)")

        await _gather(one(t) for t in dispatch_order(tasks))
        outcomes = [results[t.id] for t in tasks]
        summary = summarise(outcomes)
        b.done(key, f"{summary.correct}/{summary.total} correct ({summary.accuracy * 100:.0f}%), "
                    f"p50 {summary.latency_p50 or 0:.1f} s, model {', '.join(summary.model_versions) or '?'}")
        return outcomes

    async def give_feedback(self, outcomes: Sequence[Outcome]) -> int:
        b = self.board
        rated = [o for o in outcomes if o.run_id and o.response.status == "completed"]
        b.start("feedback", f"{len(rated)} runs")
        before = await self.probes.miner_intake()
        sem = asyncio.Semaphore(max(4, self.cfg.concurrency))
        counts = {"accepted": 0, "corrected": 0}

        async def one(o: Outcome) -> None:
            body = feedback_for(o.task, o.verdict, o.response)
            async with sem:
                try:
                    await self.gateway.feedback(o.run_id or "", body)
                except GatewayCallError as exc:
                    raise LoopFailedError(str(exc)) from None
            counts["accepted" if body["rating"] > 0 else "corrected"] += 1
            b.update("feedback", f"{counts['accepted']} accepted, {counts['corrected']} corrected")

        await _gather(one(o) for o in rated)
        note = await self._settle(before, interactions=len(rated), feedback=len(rated))
        b.done("feedback", f"{counts['accepted']} accepted, {counts['corrected']} corrected{note}")
        return len(rated)

    async def _settle(self, before: dict[str, int] | None, *, interactions: int, feedback: int) -> str:
        """Wait until the log-miner has taken in our runs and feedback, so the dataset built next
        holds the corrections (the retrain request travels on another queue and could overtake
        them). Read from the log-miner's intake counters; best effort where they cannot be read."""
        if before is None:
            return " (log-miner metrics not readable: not waiting for its intake)"
        want = {"FeedbackSubmitted": before.get("FeedbackSubmitted", 0) + feedback}
        deadline = time.monotonic() + self.cfg.settle_timeout_s
        while time.monotonic() < deadline:
            now = await self.probes.miner_intake() or {}
            if all(now.get(k, 0) >= v for k, v in want.items()):
                return ""
            await asyncio.sleep(0.5)
        return f" (the log-miner had not counted all feedback after {self.cfg.settle_timeout_s:.0f} s)"

    async def retrain(self, since: str) -> str:
        b = self.board
        b.start("dataset", "POST /v1/ops/retrain")
        body = {
            "reason": self.cfg.reason,
            "dataset": {"sources": ["mined"], "since": since, "val_fraction": self.cfg.val_fraction,
                        **({"shape_weights": self.cfg.shape_weights} if self.cfg.shape_weights else {})},
            "training": self.cfg.training,
        }
        try:
            request_id = await self.gateway.retrain(body)
        except GatewayCallError as exc:
            raise LoopFailedError(str(exc)) from None
        b.update("dataset", f"retrain {request_id[:8]} accepted; mined runs since {since}", log=True)
        return request_id

    async def follow(self, feed: EventFeed, tracker: LoopTracker) -> None:
        b = self.board
        deadline = time.monotonic() + self.cfg.follow_timeout_s
        last_news = time.monotonic()
        while not tracker.finished:
            now = time.monotonic()
            if now > deadline:
                raise LoopFailedError(f"the loop did not finish within {self.cfg.follow_timeout_s:.0f} s "
                                      f"(waiting for {_waiting_for(tracker)})")
            if now - last_news > self.cfg.quiet_timeout_s:
                raise LoopFailedError(f"no event for {self.cfg.quiet_timeout_s:.0f} s while waiting for "
                                      f"{_waiting_for(tracker)}; see the services' logs (.run/logs/)")
            msg = await feed.next(timeout=1.0)
            if msg is None:
                continue
            step = tracker.accept(msg)
            if step is None:
                continue
            last_news = time.monotonic()
            for earlier in FOLLOW_STAGES[: FOLLOW_STAGES.index(step.stage)]:
                if b[earlier].state not in ("done", "failed"):
                    b.done(earlier)
            if step.failed:
                b.fail(step.stage, step.text)
            elif step.done:
                b.done(step.stage, step.text)
                following = FOLLOW_STAGES.index(step.stage) + 1
                if following < len(FOLLOW_STAGES):  # the next stage's clock starts now
                    b.start(FOLLOW_STAGES[following], "waiting for " + _waiting_for(tracker))
            else:
                b.update(step.stage, step.text, log=step.stage != "training" or _milestone(tracker))
        if tracker.failure:
            raise LoopFailedError(tracker.failure)

    async def wait_served(self, version: str) -> None:
        b = self.board
        b.start("reload", f"waiting for the runner to load {version}")
        deadline = time.monotonic() + self.cfg.reload_timeout_s
        details: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            details = await self.probes.runner_details()
            if details is None:
                b.skip("reload", "runner health not readable here; the after-replay checks the version")
                return
            if details.get("model_version") == version:
                took = details.get("last_reload_s")
                b.done("reload", f"serving {version}" + (f" (load + warm-up {took:.1f} s)" if took else ""))
                return
            if details.get("last_reload_error_version") == version and details.get("last_reload_error"):
                raise LoopFailedError(f"the runner could not load {version}: {details['last_reload_error']}")
            await asyncio.sleep(0.5)
        serving = details.get("model_version") if details else "?"
        raise LoopFailedError(f"the runner still serves {serving} {self.cfg.reload_timeout_s:.0f} s after "
                              f"{version} was deployed")

    # ------------------------------------------------------------------ the whole loop

    async def run(self, parts: Split) -> LoopResult:
        r = self.result
        try:
            async with self.feed as feed:
                await self.check_stack()
                r.before = await self.replay("before", parts.heldout, groupthink=self.cfg.groupthink)
                # Runs logged from here on are the traffic the dataset is mined from (the held-out
                # replay above is logged before this instant: the runner stamps a run's log entry
                # before it replies).
                since = datetime.now(UTC).isoformat()
                r.traffic = await self.replay("traffic", parts.traffic, self.cfg.concurrency)
                await self.give_feedback(r.traffic)
                r.request_id = await self.retrain(since)
                r.tracker = LoopTracker(r.request_id)
                await self.follow(feed, r.tracker)
            version = r.tracker.deployed.model_version if r.tracker.deployed else ""
            await self.wait_served(version)
            r.after = await self.replay("after", parts.heldout, groupthink=self.cfg.groupthink)
            served = {o.response.model_version for o in r.after}
            if served != {version}:
                raise LoopFailedError(f"the after-replay ran on {', '.join(sorted(map(str, served)))}, not {version}")
            r.ok = True
        except LoopFailedError as exc:
            r.reason = str(exc)
            for stage in self.board.stages.values():
                if stage.state == "running":
                    self.board.fail(stage.key, r.reason)
                    break
            else:
                self.board.log(f"loop failed: {r.reason}", "red")
        finally:
            r.stages = self.board.timings()
            await self.gateway.close()
        return r


def heldout_part(parts: Split, which: str) -> Split:
    """The split with only the asked-for half of its held-out part (`validation_test`)."""
    if which == "all":
        return parts
    if which not in ("val", "test"):
        raise LoopFailedError(f"held-out part must be all, val or test, not {which!r}")
    val, test = validation_test(parts.heldout)
    return Split(parts.traffic, val if which == "val" else test)


async def _gather(coros: Any) -> None:
    """Run them all; on the first failure cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _milestone(tracker: LoopTracker) -> bool:
    """Log every fifth training step (the board shows each)."""
    p = tracker.progress
    return p is None or p.step % 5 == 0 or p.step == p.total_steps


def _waiting_for(tracker: LoopTracker) -> str:
    if tracker.dataset_id is None:
        return "dataset.built"
    if tracker.training is None:
        return "training.completed" if tracker.job_id else "training.requested"
    if tracker.export is None:
        return "export.completed"
    if tracker.evaluation is None:
        return "evaluation.completed"
    return "model.deployed"


def _production_of(models: Any) -> str | None:
    """The production version from GET /v1/registry/models, whatever its exact shape."""
    if not isinstance(models, dict):
        return None
    aliases = models.get("aliases")
    if isinstance(aliases, dict) and isinstance(aliases.get("production"), str):
        return aliases["production"]
    if isinstance(models.get("production"), str):
        return models["production"]
    for item in models.get("models") or models.get("versions") or []:
        if isinstance(item, dict) and "production" in (item.get("aliases") or []):
            return item.get("version") or item.get("model_version")
    return None


# --------------------------------------------------------------------------- reporting


def summary_dict(summary: Summary) -> dict[str, Any]:
    out = asdict(summary)
    out["accuracy"] = summary.accuracy
    out["validity"] = summary.validity
    return out


def report_dict(result: LoopResult) -> dict[str, Any]:
    t = result.tracker
    doc: dict[str, Any] = {
        "ok": result.ok, "reason": result.reason, "started_at": result.started_at, "request_id": result.request_id,
        "stages": [{"stage": name, "seconds": secs, "note": note} for name, secs, note in result.stages],
    }
    for name in ("before", "traffic", "after"):
        outcomes: list[Outcome] = getattr(result, name)
        if outcomes:
            doc[name] = summary_dict(summarise(outcomes))
            doc[name]["runs"] = [{"task": o.task.id, "category": o.task.category, "run_id": o.run_id,
                                  "correct": o.verdict.correct, "reason": o.verdict.reason,
                                  "latency_s": round(o.latency_s, 3), "model_version": o.response.model_version}
                                 for o in outcomes]
    if t is not None:
        doc["loop"] = {
            "dataset_id": t.dataset_id, "dataset_counts": t.dataset_counts, "source_run_ids": t.source_run_ids,
            "job_id": t.job_id, "model_version": t.model_version,
            "training": t.training.model_dump(mode="json", exclude={"envelope"}) if t.training else None,
            "evaluation": t.evaluation.model_dump(mode="json", exclude={"envelope"}) if t.evaluation else None,
            "deployed": t.deployed.model_dump(mode="json", exclude={"envelope"}) if t.deployed else None,
        }
    return doc


def print_result(result: LoopResult, console: Console) -> None:
    console.print()
    if result.before and result.after:
        console.print(comparison_table(summarise(result.before), summarise(result.after)))
    elif result.before:
        b = summarise(result.before)
        console.print(f"before: {b.correct}/{b.total} correct on the held-out tasks ({b.accuracy * 100:.0f}%)")
    console.print(stage_table(result.stages))
    if result.ok:
        version = result.tracker.model_version if result.tracker else "?"
        console.print(f"[bold green]loop closed:[/] {version} is in production and serves new runs")
    else:
        console.print(f"[bold red]loop failed:[/] {result.reason}")


def run_loop(cfg: LoopConfig, console: Console | None = None) -> LoopResult:
    """Load and split the tasks, run the loop with a live display, print the tables, write
    the report (when asked); returns the result (ok False with the reason when it failed)."""
    console = console or Console()
    tasks = load_tasks(cfg.tasks_file)
    parts = heldout_part(split(tasks), cfg.heldout_part).limited(cfg.traffic, cfg.heldout)
    if not parts.traffic or not parts.heldout:
        raise LoopFailedError("the task set is too small to split into traffic and held-out tasks")
    loop = ClosedLoop(cfg, console)
    console.print(f"[bold]closed loop[/]: {len(parts.traffic)} traffic tasks, {len(parts.heldout)} held-out tasks "
                  f"({cfg.tasks_file or 'the demo set'}), gateway {cfg.gateway_url}")

    async def go() -> LoopResult:
        with Live(loop.board, console=console, refresh_per_second=4, transient=not console.is_terminal):
            return await loop.run(parts)

    result = asyncio.run(go())
    print_result(result, console)
    if cfg.report_path is not None:
        cfg.report_path.parent.mkdir(parents=True, exist_ok=True)
        cfg.report_path.write_text(json.dumps(report_dict(result), indent=2, default=str))
    return result
