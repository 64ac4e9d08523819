"""HTTP and WebSocket calls to the gateway."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import connect

from .config import Credentials


# Events after which the gateway closes the stream: the run's outcome, a refusal, its deadline.
TERMINAL = ("completed", "failed", "error", "timeout")


class GatewayError(Exception):
    """The gateway refused or could not be reached; the message is meant for the user."""


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("error") or body)[:300]
    return str(body)[:300]


class GatewayClient:
    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def exchange(self, api_key: str) -> str:
        """POST /v1/auth/token with the API key; returns the access token (JWT)."""
        try:
            resp = httpx.post(
                f"{self.base_url}/v1/auth/token", headers={"X-API-Key": api_key}, timeout=self.timeout
            )
        except httpx.HTTPError as exc:
            raise GatewayError(f"cannot reach the gateway at {self.base_url}: {exc}") from None
        if resp.status_code != 200:
            raise GatewayError(f"token exchange refused ({resp.status_code}): {_detail(resp)}")
        return resp.json()["access_token"]

    def token_for(self, creds: Credentials) -> str:
        return creds.token or self.exchange(creds.api_key or "")

    def call(self, token: str, method: str, path: str, *, expect: tuple[int, ...] = (200,),
             timeout: float | None = None, **kwargs: Any) -> httpx.Response:
        """An authenticated request; GatewayError (with the gateway's reason) unless the status is expected."""
        try:
            resp = httpx.request(method, f"{self.base_url}{path}", headers={"Authorization": f"Bearer {token}"},
                                 timeout=timeout or self.timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise GatewayError(f"cannot reach the gateway at {self.base_url}: {exc}") from None
        if resp.status_code not in expect:
            detail = _detail(resp)
            if resp.status_code == 403:
                detail = f"{detail} (this needs an operator or admin key)"
            raise GatewayError(f"{method} {path} refused ({resp.status_code}): {detail}")
        return resp

    def stream_url(self, token: str) -> str:
        scheme, rest = self.base_url.split("://", 1)
        ws = {"http": "ws", "https": "wss"}.get(scheme, scheme)
        return f"{ws}://{rest}/v1/runs/stream?token={token}"

    async def stream_run(self, token: str, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Submit a run over the WebSocket and yield every event until `completed` or `failed`."""
        try:
            async with connect(self.stream_url(token), open_timeout=self.timeout, max_size=None) as ws:
                await ws.send(json.dumps(request))
                async for raw in ws:
                    event = json.loads(raw)
                    yield event
                    if event.get("type") in TERMINAL:
                        return
        except websockets.InvalidStatus as exc:
            status = exc.response.status_code
            raise GatewayError(f"the gateway refused the stream ({status})") from None
        except (OSError, websockets.WebSocketException) as exc:
            raise GatewayError(f"stream to {self.base_url} broke: {exc}") from None
        raise GatewayError("the gateway closed the stream before the run finished")


def probe(url: str, timeout: float = 3.0) -> tuple[int | None, dict[str, Any] | None, str | None]:
    """GET a health URL: (status code, JSON body, error). Never raises."""
    try:
        resp = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return None, None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    try:
        return resp.status_code, resp.json(), None
    except ValueError:
        return resp.status_code, None, resp.text[:200]
