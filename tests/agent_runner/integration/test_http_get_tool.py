"""http_get against a real local HTTP server: allowlist, redirects, size limit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent_runner.domain import ToolError
from agent_runner.tools.http_get import HttpGetTool


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        port = self.server.server_address[1]
        routes = {
            "/hello": (200, b"hello world"),
            "/big": (200, b"x" * 100_000),
            "/hop": (302, f"http://127.0.0.1:{port}/hello"),
            "/away": (302, f"http://localhost:{port}/hello"),
            "/loop": (302, "/loop"),
        }
        status, payload = routes.get(self.path, (404, b"not found"))
        self.send_response(status)
        if status == 302:
            self.send_header("Location", payload)
            payload = b""
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        return None


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_fetches_from_an_allowed_host(server):
    result = await HttpGetTool(allowlist=["127.0.0.1"]).run({"url": f"{server}/hello"})
    assert result["status"] == 200 and result["body"] == "hello world" and result["truncated"] is False
    assert result["content_type"].startswith("text/plain")


async def test_denies_every_host_by_default(server):
    with pytest.raises(ToolError, match="not on this runner's allowlist"):
        await HttpGetTool().run({"url": f"{server}/hello"})


async def test_follows_redirects_only_within_the_allowlist(server):
    assert (await HttpGetTool(allowlist=["127.0.0.1"]).run({"url": f"{server}/hop"}))["body"] == "hello world"
    with pytest.raises(ToolError, match="'localhost' is not on"):
        await HttpGetTool(allowlist=["127.0.0.1"]).run({"url": f"{server}/away"})
    with pytest.raises(ToolError, match="more than 3 redirects"):
        await HttpGetTool(allowlist=["127.0.0.1"]).run({"url": f"{server}/loop"})


async def test_caps_the_body_size(server):
    result = await HttpGetTool(allowlist=["127.0.0.1"], max_bytes=1000).run({"url": f"{server}/big"})
    assert result["truncated"] is True and len(result["body"]) == 1000


async def test_refuses_other_schemes_and_reports_network_errors():
    with pytest.raises(ToolError, match="only http and https"):
        await HttpGetTool(allowlist=["127.0.0.1"]).run({"url": "file:///etc/passwd"})
    with pytest.raises(ToolError, match="request failed"):
        await HttpGetTool(allowlist=["127.0.0.1:1"]).run({"url": "http://127.0.0.1:1/"})
