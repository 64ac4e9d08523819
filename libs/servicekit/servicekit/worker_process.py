"""Heavy work in a child process that reports on stdout as JSON lines, one event per line.

`python -m <module> --config job.json`, optionally under `nice`. Its stdout is read
asynchronously, so the event loop keeps serving HTTP, heartbeating leases and the AMQP
connection; its stderr (library logs, tracebacks) goes to a file. The child stays in the
service's process group: stopping the group stops the work with it; if only the service dies,
the child's next event write fails (EPIPE) and ends it. The trainer's recipe and the exporter's
export run this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

logger = logging.getLogger("servicekit.worker_process")

_LINE_LIMIT = 1 << 20


class WorkerProcess:
    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path, log_file: Any) -> None:
        self.proc = proc
        self.log_path = log_path
        self._log_file = log_file

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def lines(self) -> AsyncIterator[dict[str, Any]]:
        """Its JSON-object lines as they arrive, until stdout closes (other lines are skipped)."""
        assert self.proc.stdout is not None
        while True:
            try:
                raw = await self.proc.stdout.readline()
            except ValueError:  # over the line limit: not an event
                logger.warning("over-long line from worker process %d skipped", self.proc.pid)
                continue
            if not raw:
                return
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                doc = json.loads(text)
            except json.JSONDecodeError:
                logger.warning("non-JSON line from worker process %d: %.200s", self.proc.pid, text)
                continue
            if isinstance(doc, dict):
                yield doc

    async def wait(self) -> int:
        code = await self.proc.wait()
        self._close_log()
        return code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        self._close_log()

    def stderr_tail(self, max_chars: int = 2000) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(max(0, self.log_path.stat().st_size - max_chars))
                return fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def _close_log(self) -> None:
        if not self._log_file.closed:
            self._log_file.close()


class WorkerLauncher:
    """Starts `python -m <module> --config <file>` children."""

    def __init__(self, module: str, *, python: str = sys.executable, nice: int = 10,
                 env: dict[str, str] | None = None) -> None:
        self.module = module
        self.python = python
        self.nice = nice
        self.env = env

    def command(self, config: Path) -> list[str]:
        cmd = [self.python, "-m", self.module, "--config", str(config)]
        nice = shutil.which("nice")
        if self.nice and nice:
            cmd = [nice, "-n", str(self.nice), *cmd]
        return cmd

    async def start(self, config: Path, log_path: Path) -> WorkerProcess:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = log_path.open("ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command(config), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=log_file, env={**os.environ, **(self.env or {})}, limit=_LINE_LIMIT,
            )
        except BaseException:
            log_file.close()
            raise
        logger.info("worker process %d started: %s", proc.pid, " ".join(self.command(config)))
        return WorkerProcess(proc, log_path, log_file)


def event_stream() -> TextIO:
    """In the child: a private handle on the real stdout for events; fd 1 (and sys.stdout) then go
    to stderr, so even C-level prints of libraries cannot corrupt the protocol."""
    sys.stdout.flush()
    events = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return events


def emit(stream: TextIO, event: str, **fields: Any) -> None:
    """One event line, flushed at once (the reader is another process)."""
    stream.write(json.dumps({"event": event, **fields}, default=str) + "\n")
    stream.flush()
