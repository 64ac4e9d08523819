"""The live progress display: one row per stage of the loop (state, time, latest detail),
and timestamped lines for what happened, printed above it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

PENDING, RUNNING, DONE, FAILED, SKIPPED = "pending", "running", "done", "failed", "skipped"
_STYLE = {PENDING: "dim", RUNNING: "yellow", DONE: "green", FAILED: "red", SKIPPED: "dim"}
_MARK = {PENDING: "·", RUNNING: "…", DONE: "✓", FAILED: "✗", SKIPPED: "–"}


@dataclass
class Stage:
    key: str
    label: str
    state: str = PENDING
    detail: str = ""
    started: float | None = None
    ended: float | None = None

    def seconds(self, now: float) -> float | None:
        if self.started is None:
            return None
        return (self.ended or now) - self.started


class StageBoard:
    def __init__(self, stages: list[tuple[str, str]], console: Console,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stages = {key: Stage(key, label) for key, label in stages}
        self.console = console
        self.clock = clock
        self.t0 = clock()

    def __getitem__(self, key: str) -> Stage:
        return self.stages[key]

    def log(self, text: str, style: str = "") -> None:
        elapsed = self.clock() - self.t0
        stamp = f"[dim]{int(elapsed // 60):02d}:{elapsed % 60:04.1f}[/]"
        self.console.print(f"{stamp} {f'[{style}]' if style else ''}{text}{'[/]' if style else ''}", highlight=False)

    def start(self, key: str, detail: str = "") -> None:
        stage = self.stages[key]
        if stage.state == RUNNING:
            return
        stage.state, stage.started, stage.ended = RUNNING, self.clock(), None
        stage.detail = detail
        self.log(f"[bold]{stage.label}[/]" + (f": {detail}" if detail else ""))

    def update(self, key: str, detail: str, *, log: bool = False) -> None:
        stage = self.stages[key]
        if stage.state == PENDING:
            self.start(key)
        stage.detail = detail
        if log:
            self.log(f"{stage.label}: {detail}")

    def done(self, key: str, detail: str | None = None) -> None:
        stage = self.stages[key]
        if stage.started is None:
            stage.started = self.clock()
        stage.state, stage.ended = DONE, self.clock()
        if detail is not None:
            stage.detail = detail
        self.log(f"{stage.label} done in {stage.seconds(stage.ended):.1f} s" + (f": {stage.detail}" if stage.detail
                                                                                  else ""), "green")

    def fail(self, key: str, detail: str) -> None:
        stage = self.stages[key]
        if stage.started is None:
            stage.started = self.clock()
        stage.state, stage.ended, stage.detail = FAILED, self.clock(), detail
        self.log(f"{stage.label} failed: {detail}", "red")

    def skip(self, key: str, detail: str) -> None:
        stage = self.stages[key]
        stage.state, stage.detail = SKIPPED, detail

    def timings(self) -> list[tuple[str, float | None, str]]:
        now = self.clock()
        return [(s.label, s.seconds(now), s.detail if s.state != DONE else "") for s in self.stages.values()
                if s.state != PENDING or s.started is not None]

    def __rich__(self) -> Table:
        now = self.clock()
        table = Table(box=None, show_header=False, padding=(0, 1))
        table.add_column(width=1)
        table.add_column(no_wrap=True)
        table.add_column(justify="right", no_wrap=True)
        table.add_column(overflow="ellipsis", no_wrap=True)
        for s in self.stages.values():
            seconds = s.seconds(now)
            table.add_row(f"[{_STYLE[s.state]}]{_MARK[s.state]}[/]", f"[{_STYLE[s.state]}]{s.label}[/]",
                          "" if seconds is None else f"{seconds:.0f} s", s.detail)
        return table
