"""How a training run reports what it is doing: a small observer port and two reporters.

The recipe calls a `ProgressSink`; the subprocess entry point (`run.py`) writes JSON lines that
the trainer service turns into TrainingProgress events and metrics, and a person at a terminal
gets one log line per step (no tqdm: carriage-return bars make unreadable logs).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

log = logging.getLogger("trainer.training")


@dataclass(frozen=True)
class Progress:
    step: int  # optimizer steps completed (1-based after the first step)
    total_steps: int
    loss: float  # mean token loss of this step
    lr: float  # learning rate used for this step
    tokens_per_s: float  # real (non-padding) tokens per second since this process started training
    eta_s: float


class ProgressSink(Protocol):
    def started(self, start_step: int, total_steps: int, info: dict[str, Any]) -> None: ...

    def progress(self, p: Progress) -> None: ...

    def checkpoint(self, step: int, path: Path) -> None: ...


class NullSink:
    def started(self, start_step: int, total_steps: int, info: dict[str, Any]) -> None:
        pass

    def progress(self, p: Progress) -> None:
        pass

    def checkpoint(self, step: int, path: Path) -> None:
        pass


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # NaN/inf are not JSON


class JsonLinesSink:
    """One JSON object per line, flushed at once (the reader is another process)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def emit(self, event: str, **fields: Any) -> None:
        self.stream.write(json.dumps({"event": event, **fields}) + "\n")
        self.stream.flush()

    def started(self, start_step: int, total_steps: int, info: dict[str, Any]) -> None:
        self.emit("started", start_step=start_step, total_steps=total_steps, **info)

    def progress(self, p: Progress) -> None:
        fields = asdict(p)
        self.emit(
            "progress", **{k: _finite(v) if isinstance(v, float) else v for k, v in fields.items()}
        )

    def checkpoint(self, step: int, path: Path) -> None:
        self.emit("checkpoint", step=step, path=str(path))


class LogSink:
    """A readable line per step on the `trainer.training` logger."""

    def started(self, start_step: int, total_steps: int, info: dict[str, Any]) -> None:
        log.info("training steps %d..%d %s", start_step + 1, total_steps, info)

    def progress(self, p: Progress) -> None:
        log.info(
            "step %d/%d loss %.4f lr %.2e %.0f tok/s eta %.0fs",
            p.step,
            p.total_steps,
            p.loss,
            p.lr,
            p.tokens_per_s,
            p.eta_s,
        )

    def checkpoint(self, step: int, path: Path) -> None:
        log.info("checkpoint at step %d: %s", step, path)


class FanOut:
    def __init__(self, *sinks: ProgressSink) -> None:
        self.sinks = sinks

    def started(self, start_step: int, total_steps: int, info: dict[str, Any]) -> None:
        for s in self.sinks:
            s.started(start_step, total_steps, info)

    def progress(self, p: Progress) -> None:
        for s in self.sinks:
            s.progress(p)

    def checkpoint(self, step: int, path: Path) -> None:
        for s in self.sinks:
            s.checkpoint(step, path)
