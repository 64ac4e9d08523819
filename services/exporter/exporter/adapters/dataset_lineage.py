"""The lineage port (`ports.Lineage`) over the log-miner's datasets in S3. A version's lineage: evaluation (set at promotion) → adapter → training job → dataset → the
run ids the dataset came from, read from the log-miner's dataset in S3.

The miner writes `datasets/<dataset_id>/v<N>/{manifest.json,train.jsonl,val.jsonl}`; the manifest
names the training job it requested and the files, and each dataset line carries its source run
ids in `meta.run_ids`. A dataset that is not there, or not readable as the miner writes it, leaves
the run ids empty and says so in the lineage (the export does not depend on it); S3 being away
raises, and the attempt is retried.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from contracts import TrainingCompleted
from servicekit.logs import log_fields

from ..domain import source_run_ids_from_lines
from ..ports import Artifacts

logger = logging.getLogger("exporter.lineage")

_VERSION_DIR = re.compile(r"/v(\d+)/manifest\.json$")


class LineageReader:
    def __init__(self, artifacts: Artifacts) -> None:
        self.artifacts = artifacts

    async def _manifest(self, dataset_id: str, job_id: str) -> tuple[str | None, dict[str, Any] | None]:
        """(uri, manifest) of the version whose training job is `job_id`, else of the newest one."""
        uris = [u for u in await self.artifacts.list_uris(f"datasets/{dataset_id}/") if _VERSION_DIR.search(u)]
        uris.sort(key=lambda u: int(_VERSION_DIR.search(u).group(1)), reverse=True)  # type: ignore[union-attr]
        newest: tuple[str | None, dict[str, Any] | None] = (None, None)
        for uri in uris:
            manifest = await self.artifacts.read_json(uri)
            if not isinstance(manifest, dict):
                continue
            if (manifest.get("training") or {}).get("job_id") == job_id:
                return uri, manifest
            if newest[0] is None:
                newest = (uri, manifest)
        return newest

    async def lineage(self, req: TrainingCompleted) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "evaluation_id": None,  # filled when a gate promotes it
            "adapter_uri": req.adapter_uri,
            "training_job_id": req.job_id,
            "training_metrics": req.metrics,
            "base_model": req.base_model,
            "dataset_id": req.dataset_id,
            "dataset_manifest_uri": None,
            "dataset_version": None,
            "source_run_ids": [],
        }
        try:
            uri, manifest = await self._manifest(req.dataset_id, req.job_id)
            if uri is None or manifest is None:
                doc["note"] = f"no dataset manifest under datasets/{req.dataset_id}/"
                logger.warning("lineage of job %s: %s", req.job_id, doc["note"], extra=log_fields(job_id=req.job_id))
                return doc
            doc["dataset_manifest_uri"] = uri
            doc["dataset_version"] = manifest.get("version")
            lines: list[dict[str, Any]] = []
            for split in ("train", "val"):
                uri = ((manifest.get("files") or {}).get(split) or {}).get("uri")
                if uri:
                    lines.extend(await self.artifacts.read_jsonl(uri))
            doc["source_run_ids"] = source_run_ids_from_lines(lines)
            doc["dataset_counts"] = manifest.get("counts") or {}
        except (ValueError, TypeError, AttributeError) as exc:  # malformed JSON: recorded, not fatal
            doc["note"] = f"dataset lineage malformed: {type(exc).__name__}: {exc}"[:500]
            logger.warning("lineage of job %s: %s", req.job_id, doc["note"], extra=log_fields(job_id=req.job_id))
        return doc
