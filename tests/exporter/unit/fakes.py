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

from exporter.adapters.export_store import ExportStore
from exporter.ports import Candidate
from modelregistry import ModelFile, ModelVersion
from tests.servicekit.fakes import FakeJobQueue


@dataclass
class FakeRegistrar:
    registered: dict[str, Candidate] = field(default_factory=dict)

    async def register(self, conn: Any, candidate: Candidate) -> None:
        self.registered[candidate.version] = candidate


def fake_export_store() -> ExportStore:
    """The exporter's real job store on the shared fake queue (`store.queue`) and a fake registrar."""
    return ExportStore(FakeJobQueue("job_id"), FakeRegistrar())


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
