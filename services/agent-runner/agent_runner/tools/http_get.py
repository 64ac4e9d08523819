"""http_get: fetch a URL from an allow-listed host (`TOOLS__HTTP_ALLOWLIST`; empty = none).

Redirects are followed by hand, each hop checked against the allowlist, so a permitted host
cannot bounce the runner elsewhere. Body size and time are bounded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

from contracts import FunctionSpec, ToolSpec

from ..domain import ToolError

MAX_REDIRECTS = 3


class HttpGetTool:
    name = "http_get"
    spec = ToolSpec(
        function=FunctionSpec(
            name="http_get",
            description="Fetch a web page or API response with HTTP GET (only from permitted hosts).",
            parameters={
                "type": "object",
                "properties": {"url": {"type": "string", "minLength": 1, "maxLength": 2048}},
                "required": ["url"],
                "additionalProperties": False,
            },
        )
    )

    def __init__(self, *, allowlist: Iterable[str] = (), timeout_s: float = 10.0, max_bytes: int = 256 * 1024,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.allowlist = {host.strip().lower() for host in allowlist if host.strip()}
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.transport = transport

    def check(self, url: httpx.URL) -> None:
        if url.scheme not in ("http", "https"):
            raise ToolError(f"only http and https URLs are allowed, not {url.scheme!r}")
        host = (url.host or "").lower()
        if host not in self.allowlist and f"{host}:{url.port}" not in self.allowlist:
            raise ToolError(f"host {host!r} is not on this runner's allowlist")

    async def run(self, arguments: dict[str, Any]) -> dict[str, Any]:
        try:
            url = httpx.URL(arguments["url"])
        except httpx.InvalidURL as exc:
            raise ToolError(f"invalid URL: {exc}") from None
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False, transport=self.transport,
                                     trust_env=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                self.check(url)
                try:
                    result = await self._get(client, url)
                except httpx.HTTPError as exc:
                    raise ToolError(f"request failed: {type(exc).__name__}: {exc}") from None
                if isinstance(result, httpx.URL):
                    url = result
                    continue
                return result
        raise ToolError(f"more than {MAX_REDIRECTS} redirects")

    async def _get(self, client: httpx.AsyncClient, url: httpx.URL) -> dict[str, Any] | httpx.URL:
        async with client.stream("GET", url) as response:
            if response.is_redirect and "location" in response.headers:
                return url.join(response.headers["location"])
            body = bytearray()
            truncated = False
            async for block in response.aiter_bytes():
                body += block[: self.max_bytes - len(body)]
                if len(body) >= self.max_bytes:
                    truncated = True
                    break
            return {
                "url": str(url),
                "status": response.status_code,
                "content_type": response.headers.get("content-type", ""),
                "body": body.decode(response.encoding or "utf-8", errors="replace"),
                "truncated": truncated,
            }
