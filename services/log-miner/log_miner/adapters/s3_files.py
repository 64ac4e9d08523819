"""DatasetFiles and CorpusReader on S3 / the local disk."""

from __future__ import annotations

import asyncio
from pathlib import Path

from minio.error import S3Error

from servicekit.artifacts import ArtifactStore

from ..domain.corpus import CorpusUnavailableError


class S3DatasetFiles:
    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        return await self.store.put_bytes(key, data, content_type=content_type)


class CorpusFiles:
    """Reads corpora from absolute local paths (optionally only under `roots`) or any bucket
    of the configured S3 endpoint."""

    def __init__(self, store: ArtifactStore, roots: list[str], max_bytes: int) -> None:
        self.store = store
        self.roots = [Path(r).resolve() for r in roots]
        self.max_bytes = max_bytes

    async def read(self, location: str) -> bytes:
        if location.startswith("s3://"):
            return await self._read_s3(location)
        return await asyncio.to_thread(self._read_local, location)

    def _read_local(self, location: str) -> bytes:
        path = Path(location).resolve()
        if self.roots and not any(path.is_relative_to(root) for root in self.roots):
            raise CorpusUnavailableError(f"{location} is outside the allowed corpus directories")
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                raise CorpusUnavailableError(f"{location} is larger than {self.max_bytes} bytes")
            return path.read_bytes()
        except OSError as exc:
            raise CorpusUnavailableError(f"cannot read {location}: {exc.strerror or exc}") from None

    async def _read_s3(self, location: str) -> bytes:
        bucket, _, key = location[len("s3://"):].partition("/")
        if not bucket or not key:
            raise CorpusUnavailableError(f"{location} is not s3://bucket/key")

        def get() -> bytes:
            client = self.store.client
            try:
                if client.stat_object(bucket, key).size > self.max_bytes:
                    raise CorpusUnavailableError(f"{location} is larger than {self.max_bytes} bytes")
                resp = client.get_object(bucket, key)
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchBucket", "AccessDenied"):
                    raise CorpusUnavailableError(f"cannot read {location}: {exc.code}") from None
                raise
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        return await asyncio.to_thread(get)
