"""Where the CLI finds the gateway and its credentials. Environment first, then `.run/`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"

# Default /health URLs of the services on a local stack (`make up`); AGENTLOOP_<SVC>_URL overrides.
SERVICE_PORTS = {
    "gateway": 8000,
    "agent-runner": 8101,
    "log-miner": 8102,
    "trainer": 8103,
    "evaluator": 8104,
    "exporter": 8105,
}


class ConfigError(Exception):
    """A setting the command needs is missing; the message says how to provide it."""


def gateway_url() -> str:
    return os.environ.get("AGENTLOOP_URL", DEFAULT_URL).rstrip("/")


def service_url(service: str) -> str:
    env = f"AGENTLOOP_{service.upper().replace('-', '_')}_URL"
    if env in os.environ:
        return os.environ[env].rstrip("/")
    if service == "gateway":
        return gateway_url()
    return f"http://127.0.0.1:{SERVICE_PORTS[service]}"


def run_dir(start: Path | None = None) -> Path | None:
    """The nearest `.run/` directory (written by `make up`) from the working directory upwards."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".run").is_dir():
            return folder / ".run"
    return None


@dataclass(frozen=True)
class Credentials:
    api_key: str | None = None
    token: str | None = None


def credentials(api_key: str | None = None) -> Credentials:
    """--api-key, then AGENTLOOP_API_KEY, then `.run/api-key`; AGENTLOOP_TOKEN skips the exchange."""
    if api_key:
        return Credentials(api_key=api_key.strip())
    if token := os.environ.get("AGENTLOOP_TOKEN"):
        return Credentials(token=token.strip())
    if key := os.environ.get("AGENTLOOP_API_KEY"):
        return Credentials(api_key=key.strip())
    folder = run_dir()
    if folder is not None and (folder / "api-key").is_file():
        return Credentials(api_key=(folder / "api-key").read_text().strip())
    raise ConfigError(
        "no credentials: pass --api-key, set AGENTLOOP_API_KEY (or AGENTLOOP_TOKEN), "
        "or run `make up`, which writes .run/api-key"
    )
