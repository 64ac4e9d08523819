"""A lean HTTP/1.1 keep-alive client for the benchmarks.

The load generator runs on the same two cores as the system under test, so every millisecond
of CPU it spends per request is taken from the gateway, the runner, RabbitMQ and Postgres.
httpx costs ~1.5–2.5 ms of CPU per request here (connection-pool bookkeeping, header models,
h11's pure-Python parser); this client sends pre-encoded request bytes on one persistent
connection per simulated client and parses only the status line, `content-length` and the
body, for ~0.1 ms. It supports exactly what the benchmarks need: POST (or GET) with a JSON
body, fixed headers, responses framed by `content-length` (uvicorn's framing for a JSON body).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpConnection:
    """One keep-alive connection; one request at a time (as a client that waits for its answer)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    def encode(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"host: {self.host}:{self.port}", f"content-length: {len(body)}"]
        if body:
            lines.append("content-type: application/json")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def send(self, request: bytes) -> Response:
        """Send pre-encoded request bytes (see `encode`) and read the whole response."""
        if self._writer is None or self._writer.is_closing():
            await self._connect()
        assert self._reader is not None and self._writer is not None
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].split(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        headers: dict[bytes, bytes] = {}
        for line in header_lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"content-length" not in headers:
            raise ValueError(f"response without content-length (status {status}): this client does not do chunks")
        body = await self._reader.readexactly(int(headers[b"content-length"]))
        if headers.get(b"connection", b"").lower() == b"close":
            await self.close()
        return Response(status, headers, body)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except (ConnectionError, OSError):
                pass
        self._reader = self._writer = None


# --------------------------------------------------------------------------- skeleton servers and the driver

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def skeleton_app(handle, *, startup=None, shutdown=None):
    """A raw ASGI app for the floor benchmarks: `handle(body) -> reply bytes` answers every
    request 200 with a JSON body (framed by content-length); `startup`/`shutdown` run in the
    lifespan. No routing, no validation: the least a web server can do."""

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    if startup is not None:
                        await startup()
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    if shutdown is not None:
                        await shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        reply = await handle(body)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(reply)).encode())]})
        await send({"type": "http.response.body", "body": reply})

    return app


def http_caller(port: int, path: str = "/v1/runs"):
    """`call(body) -> reply` over one keep-alive connection per calling task; `close()` after."""
    connections: dict[asyncio.Task, HttpConnection] = {}

    async def call(body: bytes) -> bytes:
        conn = connections.setdefault(asyncio.current_task(), HttpConnection("127.0.0.1", port))
        response = await conn.send(conn.encode("POST", path, body))
        if response.status != 200:
            raise RuntimeError(f"skeleton gateway answered {response.status}")
        return response.body

    async def close() -> None:
        for conn in connections.values():
            await conn.close()

    return call, close


async def drive(call, clients: int, seconds: float, body: bytes) -> dict:
    """`clients` concurrent callers, back to back, for `seconds`; throughput and latency percentiles."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            await call(body)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - began
    return {"clients": clients, "runs": len(latencies), "runs_per_s": len(latencies) / elapsed,
            "p50_ms": percentile(latencies, 0.50) * 1000, "p95_ms": percentile(latencies, 0.95) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000}
