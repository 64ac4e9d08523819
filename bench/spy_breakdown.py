"""Where a service's CPU per run goes, from the py-spy stacks `bench.agent_overhead --py-spy DIR` writes.

Each sample is charged to the innermost frame that belongs to a known layer (the database
driver, the AMQP client, FastStream, the HTTP server, pydantic, JSON, logging, metrics, auth,
the event loop) or else to our own code (the first frame from `gateway/`, `agent_runner/`,
`log_miner/`, `servicekit/`, `contracts/`, `modelkit/`). With the service's measured CPU ms per
run (`--cpu SERVICE=MS`, the bench's column), the shares become ms per run.

    .venv/bin/python -m bench.spy_breakdown /tmp/spy --level 16 --cpu gateway=2.8 --cpu agent_runner=2.1 \\
        --cpu log_miner=1.1
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# (layer, pattern on a frame's file path), checked from the innermost frame outwards.
LAYERS = [
    ("Postgres driver (asyncpg)", r"asyncpg/"),
    ("AMQP client (aio-pika, aiormq, pamqp)", r"(aio_pika|aiormq|pamqp)/"),
    ("FastStream (broker, subscriber, middlewares)", r"(faststream|fast_depends)/"),
    ("HTTP server (uvicorn, h11, httptools)", r"(uvicorn|h11|httptools)/"),
    ("FastAPI / Starlette (routing, dependencies)", r"(fastapi|starlette|anyio)/"),
    ("pydantic (validation, serialisation)", r"(pydantic|pydantic_core)/"),
    ("JSON", r"(json/|orjson)"),
    ("logging", r"logging/"),
    ("Prometheus client", r"prometheus_client/"),
    ("auth (PyJWT, cryptography)", r"(jwt/|cryptography/)"),
    ("Redis client", r"redis/"),
    ("event loop and tasks (asyncio)", r"asyncio/"),
]
OURS = re.compile(r"\((gateway|agent_runner|log_miner|servicekit|contracts|modelkit)/([^:]+)")


def layer_of(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for name, pattern in LAYERS:
            if re.search(pattern, frame):
                return name
        if (m := OURS.search(frame)) is not None:
            return f"ours: {m.group(1)}/{m.group(2)}"
    return "other"


def breakdown(path: Path) -> Counter:
    counts: Counter = Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[layer_of(stack)] += int(n)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--level", type=int, default=16)
    parser.add_argument("--cpu", action="append", default=[], metavar="SERVICE=MS")
    args = parser.parse_args()
    cpu = {k: float(v) for k, v in (item.split("=", 1) for item in args.cpu)}
    for path in sorted(args.dir.glob(f"*-{args.level}.txt")):
        service = path.name.rsplit("-", 1)[0]
        counts = breakdown(path)
        total = sum(counts.values()) or 1
        ms = cpu.get(service)
        print(f"\n{service}: {total} samples" + (f", {ms} ms of CPU per run" if ms else ""))
        print("| where | share | ms per run |\n|---|---:|---:|")
        for name, n in counts.most_common():
            share = n / total
            if share < 0.01:
                continue
            print(f"| {name} | {share:.0%} | {share * ms:.2f} |" if ms else f"| {name} | {share:.0%} | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
