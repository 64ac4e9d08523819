"""Datasets and Reports on S3: regression examples from a log-miner val.jsonl, reports out."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

from evalkit.suites import CANDIDATE_DATASET
from servicekit.artifacts import ArtifactStore

logger = logging.getLogger("evaluator.s3")

_VERSION = re.compile(r"/v(\d+)/val\.jsonl$")


def report_key(evaluation_id: str) -> str:
    return f"evaluations/{evaluation_id}/report.json"


def suite_key(evaluation_id: str, name: str) -> str:
    return f"evaluations/{evaluation_id}/{name}.jsonl"


class S3Reports:
    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    async def put(self, evaluation_id: str, report: dict[str, Any]) -> str:
        body = json.dumps(report, indent=1, ensure_ascii=False, default=str).encode()
        return await self.store.put_bytes(report_key(evaluation_id), body, "application/json")

    async def put_suite(self, evaluation_id: str, name: str, body: bytes) -> str:
        return await self.store.put_bytes(suite_key(evaluation_id, name), body, "application/x-ndjson")


class S3Datasets:
    """A regression suite's `source`: `candidate_dataset` (the newest `datasets/<id>/v<N>/val.jsonl`
    the log-miner wrote for the candidate's dataset), an `s3://bucket/key` or a local path."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    async def regression_lines(self, source: str, dataset_id: str | None) -> list[dict[str, Any]]:
        if source == CANDIDATE_DATASET:
            if not dataset_id:
                logger.info("regression source %s: the export names no dataset", source)
                return []
            key = await asyncio.to_thread(self._newest_val, dataset_id)
            if key is None:
                logger.info("regression source %s: no val.jsonl under datasets/%s/", source, dataset_id)
                return []
            return _lines(await self.store.get_bytes(key))
        if source.startswith("s3://"):
            bucket, _, key = source[len("s3://"):].partition("/")
            return _lines(await asyncio.to_thread(self._get, bucket, key))
        return _lines(await asyncio.to_thread(Path(source).read_bytes))

    def _newest_val(self, dataset_id: str) -> str | None:
        best: tuple[int, str] | None = None
        for obj in self.store.client.list_objects(self.store.bucket, prefix=f"datasets/{dataset_id}/", recursive=True):
            match = _VERSION.search(obj.object_name)
            if match and (best is None or int(match.group(1)) > best[0]):
                best = (int(match.group(1)), obj.object_name)
        return best[1] if best else None

    def _get(self, bucket: str, key: str) -> bytes:
        resp = self.store.client.get_object(bucket, key)
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()


def _lines(data: bytes) -> list[dict[str, Any]]:
    out = []
    for n, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        doc = json.loads(line)
        if not isinstance(doc, dict):
            raise ValueError(f"val.jsonl line {n} is not a JSON object")
        out.append(doc)
    return out
