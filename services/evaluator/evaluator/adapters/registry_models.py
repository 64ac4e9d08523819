"""ModelFiles: production from the model registry (schema `registry`, read only), GGUFs made local
with `modelregistry.local_gguf_path` (bundled base from its package, S3 objects downloaded once
into the cache by sha256 and checked)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg

from contracts import ExportedFile
from modelkit.base_model import BUNDLED_MODEL_VERSION
from modelregistry import BUNDLED_URI, ModelFile, ModelFileError, local_gguf_path, resolve
from servicekit.artifacts import ArtifactStore
from servicekit.db import asyncpg_dsn

from ..domain import CandidateUnavailableError, ProductionModel, ProductionUnavailableError

logger = logging.getLogger("evaluator.models")

BUNDLED_QUANT = "Q4_K_M"


class RegistryModelFiles:
    def __init__(self, database_url: str, store: ArtifactStore, cache_dir: Path, *, timeout_s: float = 10.0) -> None:
        self.dsn = asyncpg_dsn(database_url)
        self.store = store
        self.cache_dir = cache_dir
        self.timeout_s = timeout_s

    async def production(self) -> ProductionModel:
        try:
            conn = await asyncpg.connect(self.dsn, timeout=self.timeout_s)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise ProductionUnavailableError(f"registry: cannot connect: {exc}") from exc
        try:
            version = await resolve(conn, "production")
        except asyncpg.PostgresError as exc:  # e.g. the registry schema is not migrated yet
            raise ProductionUnavailableError(f"registry: {exc}") from exc
        finally:
            await conn.close()
        if version is None:  # a registry without production: the bundled base is production (decision 0011)
            logger.warning("the registry names no production version; comparing with the bundled base")
            return ProductionModel(BUNDLED_MODEL_VERSION, BUNDLED_QUANT, BUNDLED_URI, "")
        gguf = version.gguf()
        if gguf is None:
            raise ProductionUnavailableError(
                f"production version {version.version} has no GGUF for its quant {version.quantization!r}")
        quant = gguf.quantization or version.quantization or (BUNDLED_QUANT if gguf.uri == BUNDLED_URI else "gguf")
        return ProductionModel(version.version, quant, gguf.uri, gguf.sha256)

    async def local_production(self, model: ProductionModel) -> Path:
        file = ModelFile(quantization=model.quantization, uri=model.gguf_uri, sha256=model.sha256, size_bytes=0,
                         kind="gguf")
        try:
            return await asyncio.to_thread(local_gguf_path, file, self.cache_dir, self.store)
        except ModelFileError as exc:
            raise ProductionUnavailableError(f"production {model.version}: {exc}") from exc

    async def local_candidate(self, file: ExportedFile) -> Path:
        if not file.uri.startswith("s3://"):
            raise CandidateUnavailableError(f"{file.uri}: a candidate GGUF must be an s3:// object")
        model_file = ModelFile(quantization=file.quantization, uri=file.uri, sha256=file.sha256,
                               size_bytes=file.size_bytes, kind="gguf")
        try:
            return await asyncio.to_thread(local_gguf_path, model_file, self.cache_dir, self.store)
        except ModelFileError as exc:
            raise CandidateUnavailableError(str(exc)) from exc
