"""`agentloop status`: each service's readiness and details, as a table."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import typer
from rich.console import Console
from rich.table import Column, Table

from ..client import probe
from ..config import SERVICE_PORTS, service_url

# /health/detailed keys already shown elsewhere in the table.
_SKIP = {"status", "service", "uptime_s", "checks"}


def _row(service: str) -> dict[str, Any]:
    url = service_url(service)
    code, ready, error = probe(f"{url}/health/ready")
    _, detailed, _ = probe(f"{url}/health/detailed") if code is not None else (None, None, None)
    return {"service": service, "url": url, "code": code, "ready": ready, "detailed": detailed, "error": error}


def _checks(body: dict[str, Any] | None) -> str:
    if not body or "checks" not in body:
        return ""
    return "\n".join(
        f"{name} ok" if result.get("ok") else f"{name} FAILED: {result.get('error')}"
        for name, result in body["checks"].items()
    )


def _details(body: dict[str, Any] | None) -> str:
    if not body:
        return ""
    lines = [f"uptime {body['uptime_s']}s"] if "uptime_s" in body else []
    for key, value in body.items():
        if key in _SKIP or value is None:
            continue
        text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        lines.append(f"{key}: {text if len(text) <= 60 else text[:57] + '...'}")
    return "\n".join(lines)


def status() -> None:
    """Probe /health/ready and /health/detailed of every service; exit 1 if any is not ready."""
    with ThreadPoolExecutor(len(SERVICE_PORTS)) as pool:
        rows = list(pool.map(_row, SERVICE_PORTS))
    table = Table("service", "url", "ready", "checks", Column("details", overflow="fold"))
    all_ready = True
    for r in rows:
        if r["code"] == 200:
            state = "[green]ready[/]"
        elif r["code"] is None:
            state, all_ready = "[red]down[/]", False
            r["error"] = "unreachable"
        else:
            state, all_ready = f"[yellow]not ready ({r['code']})[/]", False
        checks = _checks(r["ready"]) or (r["error"] or "")
        table.add_row(r["service"], r["url"], state, checks, _details(r["detailed"]))
    # Wide enough for the details even when stdout is not a terminal (rich assumes 80 then).
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)
    raise typer.Exit(0 if all_ready else 1)
