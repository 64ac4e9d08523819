"""`agentloop canary start VERSION --share 10%`, `canary status [--follow]`, `canary stop`: canary
rollouts through the gateway (operator role, decision 0020). The exporter records them in the
registry; the log-miner's judge reports on them and, in `canary` mode, promotes or rolls back."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ..client import GatewayClient
from ..config import credentials, gateway_url

canary_app = typer.Typer(help="Canary rollouts: a share of live runs on a version, judged on live outcomes.",
                         no_args_is_help=True)

ApiKey = Annotated[str | None, typer.Option(help="default: AGENTLOOP_API_KEY, then .run/api-key")]
Reason = Annotated[str, typer.Option(help="why (kept in the audit log and on the canary)")]
Wait = Annotated[bool, typer.Option("--wait", help="return once the registry shows it (exit 1 if not in time)")]
WaitSeconds = Annotated[float, typer.Option(min=0.1, max=300, help="how long --wait waits at most")]
PATH = "/v1/registry/canary"


def _client(api_key: str | None) -> tuple[GatewayClient, str]:
    client = GatewayClient(gateway_url())
    return client, client.token_for(credentials(api_key))


def _post(path: str, body: dict[str, Any], wait: bool, wait_s: float, api_key: str | None) -> dict[str, Any]:
    client, token = _client(api_key)
    params = {"wait": "true", "wait_s": str(wait_s)} if wait else None
    resp = client.call(token, "POST", path, json=body, params=params, expect=(200, 202),
                       timeout=client.timeout + (wait_s if wait else 0))
    return resp.json()


@canary_app.command("start")
def start(
    version: Annotated[str, typer.Argument(help="a registered version (not production)")],
    share: Annotated[str, typer.Option(help="per cent of live runs, e.g. 10% or 2.5")] = "10%",
    mode: Annotated[str, typer.Option(help="canary: the judge promotes or rolls back; ab: a report only")] = "canary",
    min_samples: Annotated[int, typer.Option(min=1, help="finished runs per arm before a verdict")] = 30,
    max_minutes: Annotated[float, typer.Option(min=0.2, help="the judge's time limit")] = 60.0,
    reason: Reason = "",
    wait: Wait = False,
    wait_s: WaitSeconds = 30.0,
    api_key: ApiKey = None,
) -> None:
    """Route a share of live runs to VERSION; prints the canary's id."""
    answer = _post(PATH, {"model_version": version, "share": share, "mode": mode, "min_samples": min_samples,
                          "max_duration_s": round(max_minutes * 60), "reason": reason}, wait, wait_s, api_key)
    err = Console(stderr=True)
    if answer["status"] == "done":
        err.print(f"canary [bold]{answer['canary_id']}[/]: {share} of live runs on {version}")
    elif answer["status"] == "pending":
        err.print(f"[yellow]canary requested ({answer['canary_id']}), but the registry does not show it yet: see "
                  "the exporter's log[/]")
    else:
        err.print(f"canary requested: [bold]{answer['canary_id']}[/] (`agentloop canary status` shows it)")
    typer.echo(answer["canary_id"])
    if wait and answer["status"] != "done":
        raise typer.Exit(1)


@canary_app.command("stop")
def stop(reason: Reason = "", wait: Wait = False, wait_s: WaitSeconds = 30.0, api_key: ApiKey = None) -> None:
    """End the running canary; production stays as it is."""
    answer = _post(f"{PATH}/stop", {"reason": reason}, wait, wait_s, api_key)
    Console(stderr=True).print(f"canary {answer['canary_id']}: stop {'done' if answer['status'] == 'done' else 'requested'}")
    typer.echo(answer["canary_id"])
    if wait and answer["status"] != "done":
        raise typer.Exit(1)


def summary(view: dict[str, Any]) -> str:
    """One line: the canary, each arm's tallies and the judge's interim decision."""
    report = view.get("report") or {}
    parts = [f"canary {view['canary_id']} ({view['mode']}): {view['share_pct']:g}% on {view['model_version']} "
             f"against {view['production_version']}, {view['status']}"]
    for arm in ("candidate", "production"):
        tally = report.get(arm)
        if tally:
            ratio = tally.get("valid_call_ratio")
            parts.append(f"{arm} {tally['runs']} runs, valid calls {'-' if ratio is None else f'{ratio:.1%}'}")
    if report.get("decision"):
        parts.append(f"judge: {report['decision']} ({report.get('reason', '')})")
    elif view.get("report_unavailable"):
        parts.append(f"no report: {view['report_unavailable']}")
    if view["status"] != "running" and view.get("reason"):
        parts.append(f"ended: {view['reason']}")
    return "; ".join(parts)


@canary_app.command("status")
def status(
    canary_id: Annotated[str | None, typer.Option(help="default: the running canary, else the last")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the gateway's answer as JSON")] = False,
    follow: Annotated[bool, typer.Option("--follow", help="show the sample counts and interim verdict until the "
                                                          "canary ends")] = False,
    interval_s: Annotated[float, typer.Option(min=0.2, help="--follow: seconds between two reads")] = 5.0,
    api_key: ApiKey = None,
) -> None:
    """The canary and the judge's live report; exit 1 when it ended rolled back."""
    client, token = _client(api_key)
    params = {"canary_id": canary_id} if canary_id else None
    view = client.call(token, "GET", PATH, params=params).json()
    if follow and view["status"] == "running":
        view = _follow(client, token, view, interval_s)
    if as_json:
        typer.echo(json.dumps(view, indent=2))
    else:
        typer.echo(summary(view))
    if view["status"] == "rolled_back":
        raise typer.Exit(1)


def _follow(client: GatewayClient, token: str, view: dict[str, Any], interval_s: float) -> dict[str, Any]:
    """A bar per arm (finished runs of the minimum sample) and the interim verdict, read every
    `interval_s` until the canary ends."""
    params = {"canary_id": view["canary_id"]}
    need = view["min_samples"]
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f}"),
                  TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=Console(stderr=True)) as bars:
        arms = {arm: bars.add_task(arm, total=need, note="") for arm in ("candidate", "production")}
        while True:
            report = view.get("report") or {}
            for arm, task in arms.items():
                tally = report.get(arm) or {}
                ratio = tally.get("valid_call_ratio")
                bars.update(task, completed=min(tally.get("runs", 0), need),
                            note=f"valid calls {'-' if ratio is None else f'{ratio:.1%}'}")
            bars.console.print(f"judge: {report.get('decision', '-')}: {report.get('reason', '')}", end="\r")
            if view["status"] != "running":
                return view
            time.sleep(interval_s)
            view = client.call(token, "GET", PATH, params=params).json()
