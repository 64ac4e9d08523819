"""In-memory fakes of the exporter's own ports (the adapters are tested against the real things)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts import Contract, TrainingCompleted
from exporter.domain import ExportJob, JobStatus
from exporter.ports import Candidate
from modelregistry import ModelFile, ModelVersion


@dataclass
class FakeJobStore:
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    inbox: set[str] = field(default_factory=set)
    registered: dict[str, Candidate] = field(default_factory=dict)
    staged: list[Contract] = field(default_factory=list)
    published: list[Contract] = field(default_factory=list)
    heartbeats: int = 0

    async def accept(self, msg: TrainingCompleted, version: str) -> bool:
        if msg.envelope.message_id in self.inbox:
            return False
        self.inbox.add(msg.envelope.message_id)
        if msg.job_id in self.jobs:
            return False
        self.jobs[msg.job_id] = {"version": version, "request": msg, "status": JobStatus.QUEUED, "attempts": 0,
                                 "owner": None, "error": None}
        return True

    async def claim(self, owner: str, ttl_s: float) -> ExportJob | None:
        for job_id, j in self.jobs.items():
            if j["status"] in (JobStatus.QUEUED, JobStatus.RUNNING) and j["owner"] is None:
                j.update(status=JobStatus.RUNNING, owner=owner)
                return ExportJob(job_id, j["version"], j["request"], JobStatus.RUNNING, j["attempts"], j["error"],
                                 started_at=datetime.now(UTC))
        return None

    def _held(self, job_id: str, owner: str) -> bool:
        j = self.jobs.get(job_id)
        return j is not None and j["owner"] == owner and j["status"] == JobStatus.RUNNING

    async def heartbeat(self, job_id: str, owner: str, ttl_s: float, stage: str | None,
                        progress: dict[str, Any] | None) -> bool:
        self.heartbeats += 1
        return self._held(job_id, owner)

    async def start_attempt(self, job_id: str, owner: str) -> int | None:
        if not self._held(job_id, owner):
            return None
        self.jobs[job_id]["attempts"] += 1
        return self.jobs[job_id]["attempts"]

    async def release(self, job_id: str, owner: str, *, error: str | None, retry_after_s: float,
                      refund_attempt: bool) -> bool:
        if not self._held(job_id, owner):
            return False
        j = self.jobs[job_id]
        j.update(owner=None, error=error or j["error"])
        if refund_attempt:
            j["attempts"] = max(0, j["attempts"] - 1)
        return True

    async def complete(self, job_id: str, owner: str, *, candidate: Candidate, result: dict[str, Any],
                       event: Contract) -> bool:
        if not self._held(job_id, owner):
            return False
        self.jobs[job_id].update(status=JobStatus.COMPLETED, owner=None, result=result)
        self.registered[candidate.version] = candidate
        self.staged.append(event)
        return True

    async def fail(self, job_id: str, owner: str, *, reason: str, event: Contract) -> bool:
        if not self._held(job_id, owner):
            return False
        self.jobs[job_id].update(status=JobStatus.FAILED, owner=None, error=reason)
        self.staged.append(event)
        return True

    async def publish(self, *events: Contract) -> None:
        self.published.extend(events)

    async def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for j in self.jobs.values():
            out[j["status"].value] = out.get(j["status"].value, 0) + 1
        return out

    async def last_finished(self) -> dict[str, Any] | None:
        return None


@dataclass
class FakeArtifacts:
    """Objects as a dict of URI → bytes; uploads land there too."""

    objects: dict[str, bytes] = field(default_factory=dict)
    bucket: str = "bucket"

    def put_json(self, key: str, doc: Any) -> str:
        uri = f"s3://{self.bucket}/{key}"
        self.objects[uri] = json.dumps(doc).encode()
        return uri

    async def download_dir(self, uri: str, dest: Path) -> Path:
        from exporter.domain import AdapterUnavailableError

        prefix = uri.rstrip("/") + "/"
        found = {u: b for u, b in self.objects.items() if u.startswith(prefix)}
        if not found:
            raise AdapterUnavailableError(f"nothing stored under {uri}")
        for u, data in found.items():
            target = dest / u[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return dest

    async def upload_file(self, key: str, path: Path) -> tuple[str, str, int]:
        data = path.read_bytes()
        uri = f"s3://{self.bucket}/{key}"
        self.objects[uri] = data
        return uri, hashlib.sha256(data).hexdigest(), len(data)

    async def read_json(self, uri: str) -> Any:
        return json.loads(self.objects[uri])

    async def read_jsonl(self, uri: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.objects[uri].decode().splitlines() if x.strip()]

    async def read_text(self, uri: str) -> str:
        return self.objects[uri].decode()

    async def list_uris(self, prefix: str) -> list[str]:
        return sorted(u for u in self.objects if u.startswith(f"s3://{self.bucket}/{prefix}"))

    async def local_model_file(self, file: ModelFile) -> Path:
        raise AssertionError("not used here")


class FakeProcess:
    """Plays back JSON lines, then exits with `status`."""

    def __init__(self, lines: list[dict[str, Any]], status: int = 0, hold: asyncio.Event | None = None) -> None:
        self._lines = lines
        self.status = status
        self.hold = hold
        self.killed = False

    async def lines(self) -> AsyncIterator[dict[str, Any]]:
        for doc in self._lines:
            yield doc
        if self.hold is not None:
            await self.hold.wait()

    async def wait(self) -> int:
        return self.status

    async def kill(self) -> None:
        self.killed = True

    def stderr_tail(self, max_chars: int = 2000) -> str:
        return "Traceback ...\nMemoryError\n" if self.status else ""


class FakeLauncher:
    """Each start reads the job file and asks `script(spec_doc)` for the process to play."""

    def __init__(self, script) -> None:  # noqa: ANN001 - (dict) -> FakeProcess
        self.script = script
        self.started: list[dict[str, Any]] = []

    async def start(self, config: Path, log_path: Path) -> FakeProcess:
        spec = json.loads(config.read_text())
        self.started.append(spec)
        return self.script(spec)


def version(name: str, *, status: str = "candidate", quant: str | None = "Q4_K_M", sha: str = "a" * 64,
            files: list[ModelFile] | None = None) -> ModelVersion:
    return ModelVersion(
        version=name, base_model="bundled", status=status, quantization=quant,
        files=files if files is not None else [ModelFile("Q4_K_M", f"s3://b/models/{name}/{name}.Q4_K_M.gguf", sha,
                                                         10, "gguf")],
        lineage={}, metrics={}, job_id="j", dataset_id="d", adapter_uri=None, evaluation_id=None,
        created_at=datetime.now(UTC),
    )
