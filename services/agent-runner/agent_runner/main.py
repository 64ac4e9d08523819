"""Entry point: `create_app()` is the uvicorn factory; `python -m agent_runner` serves it on HTTP__HOST/HTTP__PORT."""

from __future__ import annotations

from fastapi import FastAPI

from servicekit.runtime import serve
from servicekit.settings import load

from .bootstrap import build_app
from .settings import AgentRunnerSettings


def create_app() -> FastAPI:
    return build_app(load(AgentRunnerSettings))


def main() -> None:
    settings = load(AgentRunnerSettings)
    serve(build_app(settings), settings.http)


if __name__ == "__main__":
    main()
