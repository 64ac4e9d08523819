"""Entry point of `agentloop`. Command groups mount here: one module under `commands/` each."""

from __future__ import annotations

import typer
from rich.console import Console

from .client import GatewayError
from .commands import auth, canary, dataset, models, retrain, runs, screen, status
from .commands import evaluate
from .commands import label_queue as label_queue_command
from .commands import loop as loop_command
from .config import ConfigError

app = typer.Typer(
    name="agentloop",
    help="Agent Loop: run agents through the gateway, manage API keys, check the services.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(auth.api_key_app, name="api-key")
app.add_typer(dataset.dataset_app, name="dataset")
app.add_typer(screen.marks_app, name="screen-marks")
app.add_typer(canary.canary_app, name="canary")
app.command("token")(auth.token)
app.command("run")(runs.run)
app.command("status")(status.status)
app.command("retrain")(retrain.retrain)
app.command("models")(models.models)
app.command("promote")(models.promote)
app.command("rollback")(models.rollback)
app.command("label-queue")(label_queue_command.label_queue)
app.command("loop")(loop_command.loop)
app.command("eval")(evaluate.eval_command)
app.command("screen")(screen.screen)
app.command("screen-flagged")(screen.flagged)


def main() -> None:
    try:
        app()
    except (ConfigError, GatewayError) as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]agentloop: {exc}[/]")  # one line, whatever the width
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
