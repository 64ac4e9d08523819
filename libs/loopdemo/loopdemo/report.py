"""Scores of a replay (accuracy per category, JSON validity, latency) and the before/after table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.table import Table

from .judge import Response, Verdict
from .tasks import Task


@dataclass(frozen=True)
class Outcome:
    """One task run through the gateway and judged."""

    task: Task
    run_id: str | None
    response: Response
    verdict: Verdict
    latency_s: float


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class Summary:
    total: int
    correct: int
    per_category: dict[str, tuple[int, int]]  # category → (correct, total)
    valid_calls: tuple[int, int]  # (runs whose calls all parsed and fit their schema, runs with a call)
    failed_runs: int  # runs that did not complete (failed, timeout)
    latency_p50: float | None
    latency_p95: float | None
    model_versions: tuple[str, ...] = field(default_factory=tuple)
    mean_agreement: float | None = None  # GroupThink runs only: mean of each run's lowest agreement

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def category_accuracy(self, category: str) -> float | None:
        correct, total = self.per_category.get(category, (0, 0))
        return correct / total if total else None

    @property
    def validity(self) -> float | None:
        valid, attempted = self.valid_calls
        return valid / attempted if attempted else None


def summarise(outcomes: Sequence[Outcome]) -> Summary:
    per: dict[str, list[int]] = {}
    for o in outcomes:
        counts = per.setdefault(o.task.category, [0, 0])
        counts[0] += int(o.verdict.correct)
        counts[1] += 1
    attempted = [o for o in outcomes if o.response.valid_calls is not None]
    latencies = [o.latency_s for o in outcomes if o.response.status == "completed"]
    versions = sorted({o.response.model_version for o in outcomes if o.response.model_version})
    agreements = [o.response.agreement for o in outcomes if o.response.agreement is not None]
    return Summary(
        total=len(outcomes), correct=sum(int(o.verdict.correct) for o in outcomes),
        per_category={k: (v[0], v[1]) for k, v in per.items()},
        valid_calls=(sum(int(bool(o.response.valid_calls)) for o in attempted), len(attempted)),
        failed_runs=sum(1 for o in outcomes if o.response.status != "completed"),
        latency_p50=percentile(latencies, 50), latency_p95=percentile(latencies, 95), model_versions=tuple(versions),
        mean_agreement=sum(agreements) / len(agreements) if agreements else None,
    )


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def _frac(correct: int, total: int) -> str:
    return f"{correct}/{total} ({correct / total * 100:.0f}%)" if total else "–"


def _secs(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} s"


def _delta_pct(before: float | None, after: float | None) -> str:
    if before is None or after is None:
        return ""
    d = (after - before) * 100
    style = "green" if d > 0 else "red" if d < 0 else "dim"
    return f"[{style}]{d:+.0f} pts[/]"


def _delta_s(before: float | None, after: float | None) -> str:
    if before is None or after is None:
        return ""
    return f"{after - before:+.2f} s"


def comparison_table(before: Summary, after: Summary, title: str = "held-out tasks: before → after") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_column("change", justify="right")
    categories = sorted(set(before.per_category) | set(after.per_category))
    for category in categories:
        b = before.per_category.get(category, (0, 0))
        a = after.per_category.get(category, (0, 0))
        table.add_row(f"accuracy: {category}", _frac(*b), _frac(*a),
                      _delta_pct(before.category_accuracy(category), after.category_accuracy(category)))
    table.add_row("[bold]accuracy: all[/]", _frac(before.correct, before.total), _frac(after.correct, after.total),
                  _delta_pct(before.accuracy, after.accuracy))
    table.add_row("valid calls (JSON + schema)", _frac(*before.valid_calls), _frac(*after.valid_calls),
                  _delta_pct(before.validity, after.validity))
    table.add_row("latency p50", _secs(before.latency_p50), _secs(after.latency_p50),
                  _delta_s(before.latency_p50, after.latency_p50))
    table.add_row("latency p95", _secs(before.latency_p95), _secs(after.latency_p95),
                  _delta_s(before.latency_p95, after.latency_p95))
    if before.mean_agreement is not None or after.mean_agreement is not None:
        table.add_row("GroupThink confidence (mean agreement)", _pct(before.mean_agreement),
                      _pct(after.mean_agreement), _delta_pct(before.mean_agreement, after.mean_agreement))
    if before.failed_runs or after.failed_runs:
        table.add_row("runs not completed", str(before.failed_runs), str(after.failed_runs), "")
    table.add_row("model version", ", ".join(before.model_versions) or "–", ", ".join(after.model_versions) or "–", "")
    return table


def stage_table(stages: Sequence[tuple[str, float | None, str]], title: str = "time per stage") -> Table:
    """Rows of (stage, seconds or None when it did not run, note)."""
    table = Table(title=title, title_justify="left")
    table.add_column("stage")
    table.add_column("time", justify="right")
    table.add_column("note")
    total = 0.0
    for name, seconds, note in stages:
        total += seconds or 0.0
        table.add_row(name, "–" if seconds is None else _duration(seconds), note)
    table.add_row("[bold]total[/]", _duration(total), "")
    return table


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {rest:04.1f} s"
