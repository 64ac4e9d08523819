"""The log-miner's operator reads over its internal HTTP port (decision 0013): its label queue,
its dataset exports and the canary judge's report. The log-miner owns the runs, their feedback, the order and the datasets; the
gateway only checks who asks and passes it on."""

from __future__ import annotations

from typing import Any

import httpx

from contracts.learning import LabelQueue

from ..domain.errors import LogMinerUnavailableError


class DatasetNotFoundError(Exception):
    """The log-miner has no such dataset version (the route answers 404)."""


class LogMinerClient:
    def __init__(self, base_url: str, *, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s)

    async def _get(self, path: str, params: dict[str, str | int], *, missing: int | None = None) -> httpx.Response:
        """A 200 answer (or the `missing` status, for the caller to read); anything else raises
        LogMinerUnavailableError naming what went wrong."""
        try:
            resp = await self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise LogMinerUnavailableError(
                f"the log-miner at {self.base_url} cannot be reached: {type(exc).__name__}: {exc}") from None
        if resp.status_code != 200 and resp.status_code != missing:
            raise LogMinerUnavailableError(
                f"the log-miner at {self.base_url} answered {resp.status_code}: {resp.text[:200]}")
        return resp

    async def head(self, limit: int, model_version: str | None = None) -> LabelQueue:
        params: dict[str, str | int] = {"limit": limit}
        if model_version is not None:
            params["model_version"] = model_version
        resp = await self._get("/v1/label-queue", params)
        try:
            return LabelQueue.model_validate_json(resp.content)
        except ValueError as exc:
            raise LogMinerUnavailableError(f"the log-miner's label queue is not readable: {exc}") from None

    async def dataset_export(self, version: int, split: str, format: str) -> bytes:
        """One split of a dataset version as JSON lines in `format` (the log-miner converts it)."""
        resp = await self._get(f"/v1/datasets/{version}/export", {"split": split, "format": format}, missing=404)
        if resp.status_code == 404:
            raise DatasetNotFoundError(f"no dataset version {version}")
        return resp.content

    async def canary_report(self, canary_id: str) -> dict[str, Any] | None:
        """The canary judge's report on a canary (None: the log-miner knows none by that id)."""
        resp = await self._get("/v1/canary/report", {"canary_id": canary_id}, missing=404)
        if resp.status_code == 404:
            return None
        try:
            return dict(resp.json())
        except (ValueError, TypeError) as exc:  # not JSON, or not an object
            raise LogMinerUnavailableError(f"the log-miner's canary report is not readable: {exc}") from None

    async def close(self) -> None:
        await self._client.aclose()
