"""Fakes of the trainer's own ports (S3, the base-model resolver, progress, a scripted recipe
process). The job store is the real `TrainingJobStore` on the shared `tests.servicekit.fakes`
job queue."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts import TrainingProgress
from trainer.domain import DatasetUnavailableError, UnknownBaseModelError
from trainer.training.job import TrainingJobSpec


class FakeArtifacts:
    def __init__(self, bucket: str = "bucket") -> None:
        self.bucket = bucket
        self.objects: dict[str, bytes] = {}
        self.deleted: list[str] = []

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _key(self, uri: str) -> str:
        prefix = f"s3://{self.bucket}/"
        if not uri.startswith(prefix):
            raise DatasetUnavailableError(f"{uri} is not in {self.bucket}")
        return uri[len(prefix):]

    def keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))

    async def download(self, uri: str, dest: Path) -> Path:
        key = self._key(uri)
        if key not in self.objects:
            raise DatasetUnavailableError(f"{uri} does not exist")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.objects[key])
        return dest

    async def download_dir(self, uri: str, dest: Path) -> Path:
        prefix = self._key(uri.rstrip("/") + "/")
        for key in self.keys(prefix):
            target = dest / key[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.objects[key])
        return dest

    async def upload_dir(self, src: Path, prefix: str) -> str:
        prefix = prefix.rstrip("/") + "/"
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            self.objects[prefix + path.relative_to(src).as_posix()] = path.read_bytes()
        return self.uri(prefix)

    async def delete_dir(self, uri: str) -> None:
        self.deleted.append(uri)
        for key in self.keys(self._key(uri.rstrip("/") + "/")):
            del self.objects[key]


class FakeResolver:
    def __init__(self, known: dict[str, str] | None = None) -> None:
        self.known = known or {"bundled": "/models/bundled.gguf"}

    async def resolve(self, name: str) -> str:
        if name not in self.known:
            raise UnknownBaseModelError(f"unknown base model {name!r}")
        return self.known[name]


class FakeProgress:
    def __init__(self) -> None:
        self.events: list[TrainingProgress] = []

    async def publish(self, event: TrainingProgress) -> None:
        self.events.append(event)


# --------------------------------------------------------------------------- the recipe


_STEP = re.compile(r"^step-(\d{6,})$")


@dataclass
class Script:
    """What the fake recipe does in one run. It behaves like run.py: resumes from the latest
    checkpoint in checkpoint_dir, writes checkpoints and the adapter as files."""

    total_steps: int = 6
    checkpoint_every: int = 2
    crash_after_step: int | None = None  # exit -9 after this step, no result line
    fail_reason: str | None = None  # a `failed` line (exit 1) right after `started`
    hold: asyncio.Event | None = None  # the process blocks at `pause_after_step` until this is set
    pause_after_step: int = 0  # 0: right after `started`
    metrics: dict[str, float] = field(default_factory=lambda: {"train_loss": 0.5, "train_tokens_per_s": 100.0,
                                                                  "eval_loss": 0.7, "train_runtime_s": 12.0})


class FakeProcess:
    def __init__(self, spec: TrainingJobSpec, script: Script) -> None:
        self.spec = spec
        self.script = script
        self.returncode: int | None = None
        self.killed = False
        self.start_step = 0
        self._done = asyncio.Event()

    def _latest_checkpoint(self) -> int:
        d = self.spec.checkpoint_dir
        steps = [int(m.group(1)) for p in d.iterdir() if (m := _STEP.match(p.name))] if d.is_dir() else []
        return max(steps, default=0)

    async def lines(self) -> AsyncIterator[dict[str, Any]]:
        s = self.script
        try:
            self.start_step = self._latest_checkpoint()
            yield {"event": "started", "start_step": self.start_step, "total_steps": s.total_steps, "backend": "fake"}
            if s.hold is not None and s.pause_after_step == 0:
                await s.hold.wait()
            if s.fail_reason is not None:
                yield {"event": "failed", "reason": s.fail_reason}
                self.returncode = 1
                return
            for step in range(self.start_step + 1, s.total_steps + 1):
                yield {"event": "progress", "step": step, "total_steps": s.total_steps, "loss": 1.0 / step,
                       "lr": 1e-4, "tokens_per_s": 50.0, "eta_s": float(s.total_steps - step)}
                if step % s.checkpoint_every == 0 and step < s.total_steps:
                    path = self.spec.checkpoint_dir / f"step-{step:06d}"
                    path.mkdir(parents=True)
                    (path / "adapter_model.safetensors").write_bytes(b"weights-%d" % step)
                    (path / "state.json").write_text(json.dumps({"step": step}))
                    yield {"event": "checkpoint", "step": step, "path": str(path)}
                if s.hold is not None and step == s.pause_after_step:
                    await s.hold.wait()
                if s.crash_after_step is not None and step >= s.crash_after_step:
                    self.returncode = -9
                    return
            out = self.spec.output_dir
            out.mkdir(parents=True)
            (out / "adapter_config.json").write_text("{}")
            (out / "adapter_model.safetensors").write_bytes(b"final")
            yield {"event": "completed", "adapter_dir": str(out), "steps": s.total_steps, "metrics": s.metrics}
            self.returncode = 0
        finally:
            self._done.set()

    async def wait(self) -> int:
        await self._done.wait()
        return self.returncode if self.returncode is not None else -9

    async def kill(self) -> None:
        if self.returncode is None:
            self.killed = True
            self.returncode = -9
        self._done.set()

    def stderr_tail(self, max_chars: int = 2000) -> str:
        return "Traceback ...\nKilled" if self.returncode == -9 else ""


class FakeLauncher:
    """Runs the next script for each start; remembers the specs and processes."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts = list(scripts)
        self.specs: list[TrainingJobSpec] = []
        self.processes: list[FakeProcess] = []
        self.started = asyncio.Event()

    async def start(self, config: Path, log_path: Path) -> FakeProcess:
        spec = TrainingJobSpec.model_validate_json(config.read_text())
        self.specs.append(spec)
        proc = FakeProcess(spec, self.scripts.pop(0) if self.scripts else Script())
        self.processes.append(proc)
        self.started.set()
        return proc
