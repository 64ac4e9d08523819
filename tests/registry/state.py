"""Test helpers on the registry's tables: back to the fresh-install state, seed versions."""

from __future__ import annotations

import json
from typing import Any

from modelregistry import BASE_VERSION


async def reset_registry(conn: Any) -> None:
    """Only the bundled base, `production`, as the migration leaves it (history kept: it is an audit);
    no canary."""
    await conn.execute("DELETE FROM registry.canaries")
    await conn.execute("DELETE FROM registry.aliases WHERE alias <> 'production'")
    await conn.execute("UPDATE registry.aliases SET version = $1 WHERE alias = 'production'", BASE_VERSION)
    await conn.execute("DELETE FROM registry.model_versions WHERE version <> $1", BASE_VERSION)
    await conn.execute("UPDATE registry.model_versions SET status = 'production' WHERE version = $1", BASE_VERSION)


def gguf_files(version: str, quants: tuple[str, ...] = ("Q4_K_M", "Q8_0")) -> list[dict[str, Any]]:
    return [{"quantization": q, "uri": f"s3://bucket/models/{version}/{version}-{q}.gguf", "sha256": f"{i:064x}",
             "size_bytes": 1000 + i, "kind": "gguf"} for i, q in enumerate(quants, start=1)]


async def insert_version(conn: Any, version: str, *, status: str = "candidate", evaluation_id: str | None = None,
                         quantization: str | None = None, files: list[dict[str, Any]] | None = None,
                         job_id: str | None = None) -> None:
    await conn.execute(
        """INSERT INTO registry.model_versions (version, base_model, status, job_id, evaluation_id, quantization,
                                                files, lineage)
           VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, '{}'::jsonb)""",
        version, BASE_VERSION, status, job_id or f"job-{version}", evaluation_id, quantization,
        json.dumps(gguf_files(version) if files is None else files),
    )
