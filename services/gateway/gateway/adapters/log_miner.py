"""The log-miner's label queue over its internal HTTP port (decision 0013): the log-miner owns
the runs, their feedback and the order; the gateway only checks who asks and passes it on."""

from __future__ import annotations

import httpx

from contracts.learning import LabelQueue


class LabelQueueUnavailableError(Exception):
    """The log-miner could not be reached or gave no usable answer (the route answers 503)."""


class LogMinerLabelQueue:
    def __init__(self, base_url: str, *, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s)

    async def head(self, limit: int, model_version: str | None = None) -> LabelQueue:
        params: dict[str, str | int] = {"limit": limit}
        if model_version is not None:
            params["model_version"] = model_version
        try:
            resp = await self._client.get("/v1/label-queue", params=params)
        except httpx.HTTPError as exc:
            raise LabelQueueUnavailableError(
                f"the log-miner at {self.base_url} cannot be reached: {type(exc).__name__}: {exc}") from None
        if resp.status_code != 200:
            raise LabelQueueUnavailableError(
                f"the log-miner at {self.base_url} answered {resp.status_code}: {resp.text[:200]}")
        try:
            return LabelQueue.model_validate_json(resp.content)
        except ValueError as exc:
            raise LabelQueueUnavailableError(f"the log-miner's label queue is not readable: {exc}") from None

    async def close(self) -> None:
        await self._client.aclose()
