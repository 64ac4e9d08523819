"""The gateway's reader of the log-miner's label queue: a log-miner it cannot reach is a named
error (the route answers 503 with it), never a 500."""

from __future__ import annotations

import socket

import pytest

from gateway.adapters.log_miner import LogMinerUnavailableError, LogMinerClient


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


async def test_an_unreachable_log_miner_is_a_named_error():
    url = f"http://127.0.0.1:{closed_port()}"
    queue = LogMinerClient(url, timeout_s=2)
    try:
        with pytest.raises(LogMinerUnavailableError, match=f"log-miner at {url} cannot be reached"):
            await queue.head(5)
    finally:
        await queue.close()
