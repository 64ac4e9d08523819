"""Entry point: `create_app()` is the uvicorn factory; `python -m evaluator` serves it on HTTP__HOST/HTTP__PORT."""

from __future__ import annotations

from fastapi import FastAPI

from servicekit.runtime import serve
from servicekit.settings import load

from .bootstrap import build_app
from .settings import EvaluatorSettings


def create_app() -> FastAPI:
    return build_app(load(EvaluatorSettings))


def main() -> None:
    settings = load(EvaluatorSettings)
    serve(build_app(settings), settings.http)
