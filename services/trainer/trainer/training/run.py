"""Subprocess entry point: `python -m trainer.training.run --config job.json`.

stdout carries only JSON lines, one event per line, flushed as they happen:

    {"event": "started", "start_step": 0, "total_steps": 40, "backend": "peft",
     "dtype": "bfloat16", "examples": 176, "rows": 41, "steps_per_epoch": 41}
    {"event": "progress", "step": 1, "total_steps": 40, "loss": 1.41, "lr": 4e-05,
     "tokens_per_s": 118.0, "eta_s": 310.2}
    {"event": "checkpoint", "step": 20, "path": "/ckpt/step-000020"}
    {"event": "completed", "adapter_dir": "/out/adapter", "steps": 40,
     "metrics": {"train_loss": 0.52, "eval_loss": 0.61, ...}}
  or
    {"event": "failed", "reason": "ValueError: ..."}      (and exit status 1)

(each object on one line). `started` comes once setup is done (after a resume its start_step is
the checkpoint's step); `loss`, `lr`, `eta_s` may be null if not finite. Readers should ignore
events and fields they do not know.

Everything else (library warnings, logs) goes to stderr: file descriptor 1 is pointed at stderr
once the event stream has its own copy, so even C-level prints cannot corrupt the protocol.
Killing the process is safe: checkpoints are renamed into place when complete, and the next run
with `"resume": true` continues from the latest one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from pathlib import Path

from servicekit.worker_process import event_stream

from .job import TrainingJobSpec
from .progress import FanOut, JsonLinesSink, LogSink


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.training.run")
    parser.add_argument("--config", required=True, type=Path, help="job.json (TrainingJobSpec)")
    parser.add_argument(
        "--log-steps", action="store_true", help="also log one readable line per step to stderr"
    )
    args = parser.parse_args(argv)

    sink = JsonLinesSink(event_stream())
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        job = TrainingJobSpec.model_validate(json.loads(args.config.read_text()))
        from .recipe import train_job  # torch/transformers import only after the config is valid

        observer = FanOut(sink, LogSink()) if args.log_steps else sink
        adapter_dir, metrics = train_job(job, observer)
    except Exception as exc:  # the process boundary: every failure becomes one event and exit 1
        traceback.print_exc(file=sys.stderr)
        sink.emit("failed", reason=f"{type(exc).__name__}: {exc}")
        return 1
    clean = {k: v for k, v in metrics.items() if v == v and abs(v) != float("inf")}
    sink.emit("completed", adapter_dir=str(adapter_dir), steps=int(metrics["steps"]), metrics=clean)
    return 0


if __name__ == "__main__":
    sys.exit(main())
