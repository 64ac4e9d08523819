"""Entry point: `python -m agent_runner` serves `create_app()` with uvicorn."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from servicekit.settings import load

from .settings import AgentRunnerSettings


def create_app() -> FastAPI:
    from .bootstrap import bootstrap

    return bootstrap()


def main() -> None:
    settings = load(AgentRunnerSettings)
    uvicorn.run("agent_runner.main:create_app", factory=True, host=settings.http.host, port=settings.http.port,
                log_config=None)


if __name__ == "__main__":
    main()
