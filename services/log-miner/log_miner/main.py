"""Entry point: `create_app()` is the uvicorn factory; `python -m log_miner` serves it on HTTP__HOST/HTTP__PORT."""

from __future__ import annotations

from fastapi import FastAPI

from servicekit.runtime import serve
from servicekit.settings import load

from .bootstrap import build_app
from .settings import LogMinerSettings


def create_app() -> FastAPI:
    return build_app(load(LogMinerSettings))


def main() -> None:
    settings = load(LogMinerSettings)
    serve(build_app(settings), settings.http)
