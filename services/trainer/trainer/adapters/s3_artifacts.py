"""Artifacts on S3 through servicekit's ArtifactStore (minio SDK; blocking calls in threads).

Reads accept any `s3://bucket/key` the credentials can see (datasets are in the miner's bucket,
which is ours in every deployment so far); writes go to the service's bucket.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from servicekit.artifacts import ArtifactStore

from ..domain import DatasetUnavailableError

# Retrying cannot make these readable; anything else (S3 down, throttled) is retried.
_UNREADABLE = ("NoSuchKey", "NoSuchBucket", "NoSuchObject", "AccessDenied")


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise DatasetUnavailableError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket or not key:
        raise DatasetUnavailableError(f"{uri!r} is not s3://bucket/key")
    return bucket, key


class S3Artifacts:
    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self.client = store.client

    async def download(self, uri: str, dest: Path) -> Path:
        bucket, key = split_uri(uri)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            await asyncio.to_thread(self.client.fget_object, bucket, key, str(dest))
        except S3Error as exc:
            if exc.code in _UNREADABLE:
                raise DatasetUnavailableError(f"{uri} cannot be read ({exc.code})") from exc
            raise
        return dest

    def _keys(self, bucket: str, prefix: str) -> list[str]:
        return [o.object_name for o in self.client.list_objects(bucket, prefix=prefix, recursive=True)
                if o.object_name and not o.is_dir]

    async def download_dir(self, uri: str, dest: Path) -> Path:
        bucket, prefix = split_uri(uri.rstrip("/") + "/")
        for key in await asyncio.to_thread(self._keys, bucket, prefix):
            target = dest / key[len(prefix):]
            if dest.resolve() not in target.resolve().parents:
                raise ValueError(f"object {key} lies outside {uri}")
            target.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(self.client.fget_object, bucket, key, str(target))
        return dest

    async def upload_dir(self, src: Path, prefix: str) -> str:
        prefix = prefix.rstrip("/") + "/"
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            await self.store.put_file(prefix + path.relative_to(src).as_posix(), path)
        return self.store.uri(prefix)

    async def delete_dir(self, uri: str) -> None:
        bucket, prefix = split_uri(uri.rstrip("/") + "/")

        def _delete() -> None:
            keys = self._keys(bucket, prefix)
            errors = list(self.client.remove_objects(bucket, [DeleteObject(k) for k in keys]))
            if errors:
                raise RuntimeError(f"could not delete {len(errors)} objects under {uri}: {errors[0]}")

        await asyncio.to_thread(_delete)
