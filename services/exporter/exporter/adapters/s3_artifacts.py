"""Artifacts on S3 through servicekit's ArtifactStore (minio SDK; blocking calls in threads).

Reads accept any `s3://bucket/key` the credentials can see (adapters come from the trainer's
bucket, manifests from the miner's: ours in every deployment so far); writes go to ours.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from minio.error import S3Error

from modelregistry import ModelFile, local_gguf_path
from servicekit.artifacts import ArtifactStore

from ..domain import AdapterUnavailableError

# Retrying cannot make these readable; anything else (S3 down, throttled) is retried.
_UNREADABLE = ("NoSuchKey", "NoSuchBucket", "NoSuchObject", "AccessDenied")


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise AdapterUnavailableError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket or not key:
        raise AdapterUnavailableError(f"{uri!r} is not s3://bucket/key")
    return bucket, key


class S3Artifacts:
    def __init__(self, store: ArtifactStore, model_cache_dir: Path) -> None:
        self.store = store
        self.client = store.client
        self.model_cache_dir = model_cache_dir

    def _keys(self, bucket: str, prefix: str) -> list[str]:
        return [o.object_name for o in self.client.list_objects(bucket, prefix=prefix, recursive=True)
                if o.object_name and not o.is_dir]

    async def download_dir(self, uri: str, dest: Path) -> Path:
        bucket, prefix = split_uri(uri.rstrip("/") + "/")
        try:
            keys = await asyncio.to_thread(self._keys, bucket, prefix)
        except S3Error as exc:
            if exc.code in _UNREADABLE:
                raise AdapterUnavailableError(f"{uri} cannot be read ({exc.code})") from exc
            raise
        if not keys:
            raise AdapterUnavailableError(f"nothing stored under {uri}")
        for key in keys:
            target = dest / key[len(prefix):]
            if dest.resolve() not in target.resolve().parents:
                raise AdapterUnavailableError(f"object {key} lies outside {uri}")
            target.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(self.client.fget_object, bucket, key, str(target))
        return dest

    async def upload_file(self, key: str, path: Path) -> tuple[str, str, int]:
        uri, digest = await self.store.put_file(key, path)
        return uri, digest, os.path.getsize(path)

    async def _get(self, uri: str) -> bytes:
        bucket, key = split_uri(uri)

        def _read() -> bytes:
            resp = self.client.get_object(bucket, key)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        return await asyncio.to_thread(_read)

    async def read_json(self, uri: str) -> Any:
        return json.loads(await self._get(uri))

    async def read_jsonl(self, uri: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (await self._get(uri)).decode().splitlines() if line.strip()]

    async def read_text(self, uri: str) -> str:
        return (await self._get(uri)).decode()

    async def list_uris(self, prefix: str) -> list[str]:
        """URIs of the objects under `prefix` in our bucket."""
        return [self.store.uri(k) for k in await asyncio.to_thread(self._keys, self.store.bucket, prefix)]

    async def local_model_file(self, file: ModelFile) -> Path:
        return await asyncio.to_thread(local_gguf_path, file, self.model_cache_dir, self.store)
