"""Entry point: `create_app()` is the uvicorn factory; `python -m gateway` serves it on
HTTP__HOST/HTTP__PORT. `python -m gateway keygen DIR [KID]` writes a new signing key."""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

from servicekit.settings import load

from .bootstrap import build_app
from .settings import GatewaySettings


def create_app() -> FastAPI:
    return build_app(load(GatewaySettings))


def serve(settings: GatewaySettings) -> None:
    uvicorn.run(
        build_app(settings),
        host=settings.http.host,
        port=settings.http.port,
        log_config=None,  # the service's own JSON logging
        access_log=False,  # per-request lines cost more than the request; /metrics counts them
        ws_max_size=settings.max_body_bytes,
    )


def keygen(argv: list[str]) -> None:
    from .adapters.key_files import generate_key_file

    if not argv or argv[0].startswith("-"):
        raise SystemExit("usage: python -m gateway keygen DIR [KID]")
    path = generate_key_file(argv[0], argv[1] if len(argv) > 1 else None)
    print(path)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "keygen":
        keygen(argv[1:])
        return
    serve(load(GatewaySettings))
