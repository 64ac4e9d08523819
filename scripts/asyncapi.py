#!/usr/bin/env python3
"""Write (or check) the AsyncAPI document of every service under docs/asyncapi/<service>.yaml.

Convention: each service package has `bootstrap.build_broker(settings: BrokerSettings) ->
RabbitBroker` that declares every subscriber and publisher of the service without connecting
or reading any other setting; instance-specific names (reply queues) use a fixed placeholder
when not given, so the document is the same on every machine. A service that does not follow
it yet is skipped with a warning.

    .venv/bin/python scripts/asyncapi.py           # regenerate
    .venv/bin/python scripts/asyncapi.py --check   # exit 1 when a committed document is stale
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from pathlib import Path

import yaml
from faststream.specification import AsyncAPI

from contracts import SERVICES
from servicekit.settings import BrokerSettings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "asyncapi"
# Fixed so the servers section does not depend on the environment of whoever regenerates.
DOC_BROKER = BrokerSettings(url="amqp://guest:guest@rabbitmq:5672/")


class ConventionMissing(Exception):
    """The service does not expose bootstrap.build_broker(settings) yet."""


def package_of(service: str) -> str:
    return service.replace("-", "_")


def render(service: str) -> str:
    pkg = package_of(service)
    try:
        bootstrap = importlib.import_module(f"{pkg}.bootstrap")
    except ModuleNotFoundError as exc:
        if exc.name in (pkg, f"{pkg}.bootstrap"):
            raise ConventionMissing(f"{pkg}.bootstrap does not exist") from None
        raise
    build_broker = getattr(bootstrap, "build_broker", None)
    if build_broker is None:
        raise ConventionMissing(f"{pkg}.bootstrap has no build_broker(settings)")
    broker = build_broker(DOC_BROKER)
    package = importlib.import_module(pkg)
    spec = AsyncAPI(
        broker,
        title=f"agentloop {service}",
        version=importlib.metadata.version("agentloop"),
        description=(package.__doc__ or "").strip() or None,
    ).to_specification()
    # FastStream keeps subscribers in a set: sort keys so the file does not churn between runs.
    return yaml.safe_dump(spec.to_jsonable(), sort_keys=True, allow_unicode=True, width=100)


def doc_path(service: str) -> Path:
    return DOCS / f"{service}.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 if stale")
    args = parser.parse_args(argv)
    stale: list[str] = []
    for service in SERVICES:
        try:
            text = render(service)
        except ConventionMissing as exc:
            print(f"warning: skipped {service}: {exc}", file=sys.stderr)
            continue
        path = doc_path(service)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(service)
        elif not path.exists() or path.read_text() != text:
            DOCS.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(f"stale AsyncAPI documents: {', '.join(stale)}; run: .venv/bin/python scripts/asyncapi.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
