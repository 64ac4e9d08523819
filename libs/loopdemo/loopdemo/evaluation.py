"""`agentloop eval`: replay any BFCL-format file through the gateway, as a client would, and
report what the served model scores on it.

Each item becomes one run (`POST /v1/runs?wait=true`): its messages, its functions as
client-side tools (`server_tools: false`), one model turn, so the run ends with the model's
calls or its answer. Runs are judged as the closed loop judges its held-out replay
(`judge.response_of` + evalkit's AST checker) and summarised by `report.summarise`; this module
adds what a measurement needs besides: the options that were asked for, the GroupThink
agreement, and a guard that every run was served by the model that was asked for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rich.table import Table

from modelregistry import ALIASES

from .gateway import GatewayCallError
from .judge import Checker, check, response_of
from .loop import dispatch_order
from .report import Outcome, Summary, summarise
from .tasks import Task


class EvalError(Exception):
    """The measurement cannot go on (the gateway refused a run, the wrong model served it)."""


class ModelMismatchError(EvalError):
    """A run was served by another model version than the one asked for."""


@dataclass(frozen=True)
class EvalOptions:
    """What each run asks for. `constrained` None and `groupthink` None leave the engine's defaults."""

    model: str | None = None
    groupthink: int | None = None
    constrained: Literal["on", "off"] | None = None
    max_tokens: int = 256
    run_timeout_s: float = 180.0



def eval_request(task: Task, options: EvalOptions) -> dict[str, Any]:
    """The run for one item: its conversation, its functions as the client's own tools."""
    constrained = None if options.constrained is None else {"on": "auto", "off": "off"}[options.constrained]
    return task.client_run(max_tokens=options.max_tokens, timeout_s=options.run_timeout_s, constrained=constrained,
                           groupthink=options.groupthink, model=options.model)


def select(tasks: Sequence[Task], categories: Sequence[str] | None = None, limit: int | None = None) -> list[Task]:
    """The items to replay: only `categories` (when given), at most `limit` per category, in file order."""
    wanted = set(categories or ())
    unknown = wanted - {t.category for t in tasks}
    if unknown:
        known = ", ".join(sorted({t.category for t in tasks}))
        raise EvalError(f"no items of categories {', '.join(sorted(unknown))} in the file (it has: {known})")
    taken: dict[str, int] = {}
    out: list[Task] = []
    for task in tasks:
        if wanted and task.category not in wanted:
            continue
        if limit is not None and taken.get(task.category, 0) >= limit:
            continue
        taken[task.category] = taken.get(task.category, 0) + 1
        out.append(task)
    return out


def run_agreement(run: Mapping[str, Any]) -> float | None:
    """A GroupThink run's confidence: the lowest agreement of its model turns (as
    AgentRunCompleted.confidence); None for a run decoded without voting."""
    values = [
        float(step["decoding"]["agreement"])
        for step in run.get("steps") or []
        if isinstance(step.get("decoding"), Mapping) and isinstance(step["decoding"].get("agreement"), int | float)
    ]
    return min(values) if values else None


@dataclass(frozen=True)
class Judged:
    outcome: Outcome
    agreement: float | None = None


@dataclass(frozen=True)
class EvalReport:
    source: str
    options: EvalOptions
    judged: list[Judged]
    wall_s: float
    expected_version: str | None = None  # what --model resolved to, where it could be resolved
    summary: Summary = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "summary", summarise([j.outcome for j in self.judged]))

    @property
    def category_mean(self) -> float | None:
        """BFCL's summary figure: the unweighted mean of the category accuracies."""
        values = [c / n for c, n in self.summary.per_category.values() if n]
        return sum(values) / len(values) if values else None

    @property
    def agreement(self) -> tuple[float | None, int]:
        """(mean GroupThink agreement over the runs that voted, how many did)."""
        values = [j.agreement for j in self.judged if j.agreement is not None]
        return (sum(values) / len(values) if values else None), len(values)

    def as_dict(self) -> dict[str, Any]:
        s = self.summary
        agreement, voted = self.agreement
        valid, attempted = s.valid_calls
        return {
            "source": self.source,
            "options": {"model": self.options.model, "groupthink": self.options.groupthink,
                        "constrained": self.options.constrained, "max_tokens": self.options.max_tokens},
            "items": s.total,
            "correct": s.correct,
            "accuracy": s.accuracy,
            "category_mean": self.category_mean,
            "per_category": {cat: {"correct": c, "total": n, "accuracy": c / n if n else None}
                             for cat, (c, n) in sorted(s.per_category.items())},
            "valid_calls": {"valid": valid, "attempted": attempted, "rate": s.validity},
            "latency_s": {"p50": s.latency_p50, "p95": s.latency_p95},
            "agreement": {"mean": agreement, "runs": voted},
            "failed_runs": s.failed_runs,
            "model_versions": list(s.model_versions),
            "expected_version": self.expected_version,
            "wall_s": round(self.wall_s, 3),
            "runs": [
                {"id": j.outcome.task.id, "category": j.outcome.task.category, "run_id": j.outcome.run_id,
                 "status": j.outcome.response.status, "correct": j.outcome.verdict.correct,
                 "reason": j.outcome.verdict.reason, "valid_calls": j.outcome.response.valid_calls,
                 "latency_s": round(j.outcome.latency_s, 3), "agreement": j.agreement,
                 "model_version": j.outcome.response.model_version}
                for j in self.judged
            ],
        }

    def table(self) -> Table:
        s = self.summary
        title = f"{self.source}: {s.total} items, model {', '.join(s.model_versions) or '?'}"
        table = Table("metric", "value", title=title, title_justify="left")
        for category, (correct, total) in sorted(s.per_category.items()):
            table.add_row(f"accuracy: {category}", _frac(correct, total))
        table.add_row("[bold]accuracy: all[/]", _frac(s.correct, s.total))
        if len(s.per_category) > 1:
            table.add_row("mean of categories", _pct(self.category_mean))
        table.add_row("valid calls (JSON + schema)", _frac(*s.valid_calls))
        table.add_row("latency p50 / p95", f"{_secs(s.latency_p50)} / {_secs(s.latency_p95)}")
        agreement, voted = self.agreement
        if voted:
            table.add_row("GroupThink agreement (mean)", f"{agreement * 100:.0f}% over {voted} runs")
        if s.failed_runs:
            table.add_row("runs not completed", str(s.failed_runs))
        table.add_row("wall time", _secs(self.wall_s))
        return table


def _frac(correct: int, total: int) -> str:
    return f"{correct}/{total} ({correct / total * 100:.0f}%)" if total else "–"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def _secs(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} s"


async def resolve_model(gateway: Any, asked: str | None) -> str | None:
    """The version the runs must report: `asked` itself when it is a version; for an alias, the
    version the registry gives it (GET /v1/registry/models, an operator route), or None when that cannot
    be read (then the first run's version stands for it)."""
    if asked is None or asked not in ALIASES:
        return asked
    try:
        body = await gateway.models()
    except GatewayCallError:
        return None
    aliases = (body or {}).get("aliases") or {}
    return aliases.get(asked)


def served_problem(run: Mapping[str, Any], asked: str, expected: str, *, resolved: bool) -> str | None:
    """Why a run does not count for the model asked for; None when it does. `expected` is what
    `asked` resolved to, or (not `resolved`) the version the first run reported."""
    served = run.get("model_version")
    if served is None or served == expected:
        return None
    if not resolved:
        return (f"run {run.get('run_id')} was served by {served}, earlier runs by {expected}: the version "
                f"behind {asked!r} changed during the measurement")
    via = "" if asked == expected else f" ({asked!r})"
    return (f"run {run.get('run_id')} was served by {served}, not by {expected}{via}: the runner did not honour "
            "options.model, so these numbers would not be the asked model's")


Progress = Callable[[Judged, int, int], None]  # (the item just judged, judged so far, correct so far)


async def replay(gateway: Any, tasks: Sequence[Task], options: EvalOptions, *, concurrency: int = 1,
                 expected_version: str | None = None, checker: Checker | None = None,
                 on_judged: Progress | None = None) -> list[Judged]:
    """Every item through the gateway (`gateway.run(request, wait_s)`: `DemoGateway` or a fake),
    judged; in the order of `tasks`. Stops at the first run served by another model than asked
    for, or the first run the gateway refuses (a 422 would refuse them all)."""
    checker = checker or check
    sem = asyncio.Semaphore(concurrency)
    results: dict[str, Judged] = {}
    correct = 0
    expected = expected_version

    async def one(task: Task) -> None:
        nonlocal correct, expected
        async with sem:
            t0 = time.monotonic()
            try:
                run = await gateway.run(eval_request(task, options), wait_s=options.run_timeout_s + 30)
            except GatewayCallError as exc:
                raise EvalError(f"item {task.id}: {exc}") from None
            latency = time.monotonic() - t0
        if options.model is not None:
            if expected is None:  # an alias that could not be resolved: one measurement, one model
                expected = run.get("model_version")
            elif (problem := served_problem(run, options.model, expected,
                                            resolved=expected_version is not None)) is not None:
                raise ModelMismatchError(problem)
        response = response_of(run)
        verdict = checker(task, response.calls)
        judged = results[task.id] = Judged(Outcome(task, run.get("run_id"), response, verdict, latency),
                                           run_agreement(run))
        correct += int(verdict.correct)
        if on_judged is not None:
            on_judged(judged, len(results), correct)

    pending = [asyncio.ensure_future(one(t)) for t in dispatch_order(tasks)]
    try:
        await asyncio.gather(*pending)
    finally:
        for p in pending:
            p.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return [results[t.id] for t in tasks]
