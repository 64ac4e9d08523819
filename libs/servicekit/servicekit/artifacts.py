"""S3-compatible artifact storage (MinIO in compose, SeaweedFS locally) via the minio SDK."""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path

from minio import Minio
from minio.error import S3Error


class ArtifactStore:
    """Blocking SDK calls run in a thread so the event loop keeps serving."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str, *, secure: bool = False,
                 region: str = "us-east-1") -> None:
        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region)
        self.bucket = bucket

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def key_of(self, uri: str) -> str:
        prefix = f"s3://{self.bucket}/"
        if not uri.startswith(prefix):
            raise ValueError(f"{uri!r} is not in bucket {self.bucket!r}")
        return uri[len(prefix):]

    async def ensure_bucket(self) -> None:
        def _ensure() -> None:
            if self.client.bucket_exists(self.bucket):
                return
            try:
                self.client.make_bucket(self.bucket)
            except S3Error as exc:
                # Several services start at once against an empty store: one of them wins.
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

        await asyncio.to_thread(_ensure)

    async def ping(self) -> None:
        await asyncio.to_thread(self.client.bucket_exists, self.bucket)

    async def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        await asyncio.to_thread(
            self.client.put_object, self.bucket, key, io.BytesIO(data), len(data), content_type=content_type
        )
        return self.uri(key)

    async def put_file(self, key: str, path: Path) -> tuple[str, str]:
        """Upload a file; returns (uri, sha256)."""
        digest = await asyncio.to_thread(_sha256, path)
        await asyncio.to_thread(self.client.fput_object, self.bucket, key, str(path), metadata={"sha256": digest})
        return self.uri(key), digest

    async def get_bytes(self, key: str) -> bytes:
        def _get() -> bytes:
            resp = self.client.get_object(self.bucket, key)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        return await asyncio.to_thread(_get)

    async def get_file(self, key: str, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".part")
        await asyncio.to_thread(self.client.fget_object, self.bucket, key, str(tmp))
        tmp.replace(path)
        return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
