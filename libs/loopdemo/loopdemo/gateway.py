"""The demo's calls to the gateway, made as any client would: an API key exchanged for a JWT,
`POST /v1/runs?wait=true`, feedback, the operator's retrain. Also the two reads of the local
services' health the loop needs (the runner's served model, the log-miner's intake counts)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx


class GatewayCallError(Exception):
    """The gateway refused a call or could not be reached; the message says which and why."""


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("error") or body)[:300]
    return str(body)[:300]


class DemoGateway:
    def __init__(self, base_url: str, api_key: str | None = None, token: str | None = None,
                 timeout: float = 30.0) -> None:
        if not api_key and not token:
            raise GatewayCallError("an API key or a token is needed")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._token = token
        self._token_at = time.monotonic() if token else 0.0
        self._lock = asyncio.Lock()
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def close(self) -> None:
        await self.http.aclose()

    # ------------------------------------------------------------------ auth

    async def token(self, refresh: bool = False) -> str:
        async with self._lock:
            # Tokens live 30 minutes; take a new one well before that.
            stale = self.api_key is not None and time.monotonic() - self._token_at > 20 * 60
            if self._token and not refresh and not stale:
                return self._token
            if not self.api_key:
                if self._token:
                    return self._token
                raise GatewayCallError("the token was refused and there is no API key to get another")
            try:
                resp = await self.http.post("/v1/auth/token", headers={"X-API-Key": self.api_key})
            except httpx.HTTPError as exc:
                raise GatewayCallError(f"cannot reach the gateway at {self.base_url}: {exc}") from None
            if resp.status_code != 200:
                raise GatewayCallError(f"token exchange refused ({resp.status_code}): {_detail(resp)}")
            self._token = resp.json()["access_token"]
            self._token_at = time.monotonic()
            return self._token

    async def _call(self, method: str, path: str, *, ok: tuple[int, ...], what: str, **kwargs: Any) -> httpx.Response:
        """One authenticated call; a 401 gets a fresh token once, a 429 waits as told (a few times)."""
        refreshed = False
        for _ in range(6):
            headers = {"Authorization": f"Bearer {await self.token()}"}
            try:
                resp = await self.http.request(method, path, headers=headers, **kwargs)
            except httpx.HTTPError as exc:
                raise GatewayCallError(f"{what}: cannot reach the gateway at {self.base_url}: {exc!r}") from None
            if resp.status_code == 401 and not refreshed and self.api_key:
                await self.token(refresh=True)
                refreshed = True
                continue
            if resp.status_code == 429:
                await asyncio.sleep(min(float(resp.headers.get("Retry-After") or 1), 30))
                continue
            if resp.status_code not in ok:
                hint = " (this needs an operator or admin key)" if resp.status_code == 403 else ""
                raise GatewayCallError(f"{what} refused ({resp.status_code}){hint}: {_detail(resp)}")
            return resp
        raise GatewayCallError(f"{what}: still refused after retries ({resp.status_code}): {_detail(resp)}")

    # ------------------------------------------------------------------ runs

    async def run(self, request: dict[str, Any], wait_s: float) -> dict[str, Any]:
        """Submit a run and return it finished (the RunView JSON)."""
        resp = await self._call("POST", "/v1/runs", ok=(200, 202), what="run", json=request,
                                params={"wait": "true", "timeout": wait_s}, timeout=wait_s + 30)
        body = resp.json()
        if resp.status_code == 200:
            return body
        # Accepted but not finished within the wait: read it until it is.
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            run = await self.get_run(body["run_id"])
            if run.get("status") != "queued":
                return run
        raise GatewayCallError(f"run {body['run_id']} did not finish within {wait_s:.0f} s")

    async def get_run(self, run_id: str) -> dict[str, Any]:
        return (await self._call("GET", f"/v1/runs/{run_id}", ok=(200,), what=f"read run {run_id}")).json()

    async def feedback(self, run_id: str, body: dict[str, Any]) -> str:
        resp = await self._call("POST", f"/v1/runs/{run_id}/feedback", ok=(201,), what=f"feedback on {run_id}",
                                json=body)
        return resp.json()["feedback_id"]

    # ------------------------------------------------------------------ operator

    async def retrain(self, body: dict[str, Any]) -> str:
        resp = await self._call("POST", "/v1/ops/retrain", ok=(202,), what="retrain", json=body)
        return resp.json()["request_id"]

    async def models(self) -> dict[str, Any] | None:
        """GET /v1/registry/models, or None where the gateway has no such route."""
        try:
            resp = await self._call("GET", "/v1/registry/models", ok=(200,), what="list models")
        except GatewayCallError as exc:
            if "(404)" in str(exc) or "(405)" in str(exc):
                return None
            raise
        return resp.json()


# --------------------------------------------------------------------------- local service health


async def runner_details(runner_url: str) -> dict[str, Any] | None:
    """The runner's /health/detailed (`model_version` it serves, `last_reload_error`, ...);
    None when it cannot be read."""
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            resp = await http.get(f"{runner_url.rstrip('/')}/health/detailed")
        body = resp.json()
    except (httpx.HTTPError, ValueError):
        return None
    return body if isinstance(body, dict) else None


_SAMPLE = re.compile(r'^log_miner_messages_received_total\{type="(\w+)"\}\s+([0-9.eE+-]+)$', re.M)


async def miner_intake(miner_url: str) -> dict[str, int] | None:
    """First deliveries the log-miner took in, by message type (its /metrics); None if unreadable."""
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            resp = await http.get(f"{miner_url.rstrip('/')}/metrics")
    except httpx.HTTPError:
        return None
    if resp.status_code != 200:
        return None
    return {kind: int(float(value)) for kind, value in _SAMPLE.findall(resp.text)}
