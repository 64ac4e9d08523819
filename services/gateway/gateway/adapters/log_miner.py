"""The log-miner's operator reads over its internal HTTP port (decision 0013): its label queue,
its dataset exports and the canary judge's report. The log-miner owns the runs, their feedback, the order and the datasets; the
gateway only checks who asks and passes it on."""

from __future__ import annotations

from typing import Any

import httpx

from contracts.learning import LabelQueue


class LogMinerUnavailableError(Exception):
    """The log-miner could not be reached or gave no usable answer (the route answers 503)."""


class DatasetNotFoundError(Exception):
    """The log-miner has no such dataset version (the route answers 404)."""


class LogMinerClient:
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
            raise LogMinerUnavailableError(
                f"the log-miner at {self.base_url} cannot be reached: {type(exc).__name__}: {exc}") from None
        if resp.status_code != 200:
            raise LogMinerUnavailableError(
                f"the log-miner at {self.base_url} answered {resp.status_code}: {resp.text[:200]}")
        try:
            return LabelQueue.model_validate_json(resp.content)
        except ValueError as exc:
            raise LogMinerUnavailableError(f"the log-miner's label queue is not readable: {exc}") from None

    async def dataset_export(self, version: int, split: str, format: str) -> bytes:
        """One split of a dataset version as JSON lines in `format` (the log-miner converts it)."""
        try:
            resp = await self._client.get(f"/v1/datasets/{version}/export", params={"split": split, "format": format})
        except httpx.HTTPError as exc:
            raise LogMinerUnavailableError(
                f"the log-miner at {self.base_url} cannot be reached: {type(exc).__name__}: {exc}") from None
        if resp.status_code == 404:
            raise DatasetNotFoundError(f"no dataset version {version}")
        if resp.status_code != 200:
            raise LogMinerUnavailableError(
                f"the log-miner at {self.base_url} answered {resp.status_code}: {resp.text[:200]}")
        return resp.content

    async def canary_report(self, canary_id: str) -> dict[str, Any] | None:
        """The canary judge's report on a canary (None: the log-miner knows none by that id)."""
        try:
            resp = await self._client.get("/v1/canary/report", params={"canary_id": canary_id})
        except httpx.HTTPError as exc:
            raise LogMinerUnavailableError(
                f"the log-miner at {self.base_url} cannot be reached: {type(exc).__name__}: {exc}") from None
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise LogMinerUnavailableError(
                f"the log-miner at {self.base_url} answered {resp.status_code}: {resp.text[:200]}")
        try:
            return dict(resp.json())
        except ValueError as exc:
            raise LogMinerUnavailableError(f"the log-miner's canary report is not readable: {exc}") from None

    async def close(self) -> None:
        await self._client.aclose()
