"""`agentloop loop`: the main job — drive the whole learning loop once and show before/after.

traffic → feedback → retrain → dataset → training → export → gate → promotion → hot reload →
held-out replay. The stack must be running (`make up`; `make demo` does both).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from contracts import DatasetOptions, LoraOptions

from ..config import ConfigError, credentials, gateway_url, service_url


def shape_weights(items: list[str]) -> dict[str, float]:
    """`--shape-weight` items as DatasetOptions.shape_weights, checked against the contract."""
    from .retrain import name_numbers

    weights = name_numbers(items, "--shape-weight", "SHAPE")
    try:
        DatasetOptions.model_validate({"shape_weights": weights})
    except ValidationError as exc:
        raise ConfigError(f"invalid --shape-weight:\n{exc}") from None
    return weights


def training_options(max_steps: int | None, learning_rate: float | None, extra: str | None) -> dict[str, Any]:
    """The demo's training defaults, with the command's overrides; checked against LoraOptions."""
    from loopdemo.loop import DEMO_TRAINING

    options = dict(DEMO_TRAINING)
    if extra:
        try:
            more = json.loads(extra)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--training is not JSON: {exc.msg}") from None
        if not isinstance(more, dict):
            raise ConfigError("--training must be a JSON object of LoRA options")
        options.update(more)
    if max_steps is not None:
        options["max_steps"] = max_steps
    if learning_rate is not None:
        options["learning_rate"] = learning_rate
    try:
        LoraOptions.model_validate(options)
    except ValidationError as exc:
        raise ConfigError(f"invalid training options:\n{exc}") from None
    unknown = set(options) - set(LoraOptions.model_fields)
    if unknown:
        raise ConfigError(f"unknown training options: {', '.join(sorted(unknown))}")
    return options


def broker_url() -> str:
    return os.environ.get("BROKER__URL", "amqp://guest:guest@127.0.0.1:5672/")


def loop(
    tasks: Annotated[Path | None, typer.Option(
        help="BFCL-format JSONL task file, or a directory of them, e.g. ../shared/eval/bfcl-dev "
             "(default: the demo's own set)", exists=True)] = None,
    heldout_part: Annotated[str, typer.Option(
        help="all, or val / test: replay and judge only that half of the held-out part")] = "all",
    groupthink: Annotated[int | None, typer.Option(
        min=2, help="GroupThink samples per model turn on the held-out replays (default: greedy)")] = None,
    val_fraction: Annotated[float, typer.Option(
        min=0.0, max=0.5, help="share of the mined dataset kept as its validation split (the gate's dataset-val "
                               "suite when the evaluator runs with EVAL__PRIMARY=candidate_dataset)")] = 0.0,
    constrained: Annotated[str | None, typer.Option(
        help="auto or off: grammar-constrained tool calls for every run (default: the runner's setting)")] = None,
    traffic: Annotated[int | None, typer.Option(min=1, help="traffic tasks at most (default: all)")] = None,
    heldout: Annotated[int | None, typer.Option(min=1, help="held-out tasks at most (default: all)")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="runs in flight at once")] = 2,
    max_tokens: Annotated[int, typer.Option(min=8, max=1024, help="tokens per model turn")] = 96,
    max_steps: Annotated[int | None, typer.Option(min=1, help="training steps (default 28)")] = None,
    learning_rate: Annotated[float | None, typer.Option(min=0.0, help="LoRA learning rate (default 1e-3)")] = None,
    training: Annotated[str | None, typer.Option(help='more LoRA options as JSON, e.g. \'{"rank": 8}\'')] = None,
    shape_weight: Annotated[list[str] | None, typer.Option(
        "--shape-weight", help="SHAPE=NUMBER: copies per mined train example of that shape (no_call, parallel, "
                               "multi_turn, single_call, text, corrected), over the log-miner's defaults")] = None,
    timeout: Annotated[float, typer.Option(min=60, help="seconds the loop may take after the retrain")] = 2700,
    report: Annotated[Path | None, typer.Option(help="write the results as JSON here")] = None,
    api_key: Annotated[str | None, typer.Option(help="operator key; default AGENTLOOP_API_KEY, then .run/api-key")] = None,
) -> None:
    """Run the learning loop once: traffic, feedback, retrain, and back to a better model."""
    from loopdemo.events import LoopFailedError
    from loopdemo.loop import LoopConfig, run_loop
    from loopdemo.tasks import TaskFileError

    if heldout_part not in ("all", "val", "test"):
        raise ConfigError(f"--heldout-part must be all, val or test, not {heldout_part!r}")
    if constrained not in (None, "auto", "off"):
        raise ConfigError(f"--constrained must be auto or off, not {constrained!r}")
    creds = credentials(api_key)
    cfg = LoopConfig(
        gateway_url=gateway_url(), broker_url=broker_url(), runner_url=service_url("agent-runner"),
        miner_url=service_url("log-miner"), api_key=creds.api_key, token=creds.token, tasks_file=tasks,
        traffic=traffic, heldout=heldout, concurrency=concurrency, max_tokens=max_tokens,
        heldout_part=heldout_part, groupthink=groupthink, constrained=constrained, val_fraction=val_fraction,
        training=training_options(max_steps, learning_rate, training), follow_timeout_s=timeout, report_path=report,
        shape_weights=shape_weights(shape_weight or []),
    )
    console = Console()
    if not console.is_terminal:  # piped (make demo | tee, CI): wide lines instead of rich's 80 columns
        console = Console(width=int(os.environ.get("COLUMNS", "140")))
    try:
        result = run_loop(cfg, console)
    except (TaskFileError, LoopFailedError) as exc:
        raise ConfigError(str(exc)) from None
    raise typer.Exit(0 if result.ok else 1)
