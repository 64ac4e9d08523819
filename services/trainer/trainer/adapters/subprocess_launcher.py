"""The recipe as a child process: `nice -n N python -m trainer.training.run --config job.json`.

Its stdout (JSON lines only, see trainer/training/run.py) is read asynchronously, so the event loop
keeps serving HTTP, heartbeating the lease and the AMQP connection during hours of training; its
stderr (library logs, tracebacks) goes to a file in the job's work directory.

The child stays in the service's process group: stopping the group stops training with it. If
only the service dies, the child's next stdout write fails (EPIPE) and it exits within a step.
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
from typing import Any

logger = logging.getLogger("trainer.subprocess")

_LINE_LIMIT = 1 << 20  # one event line; a completed event with many metrics is still far below


class RecipeProcess:
    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path, log_file: Any) -> None:
        self.proc = proc
        self.log_path = log_path
        self._log_file = log_file

    async def lines(self) -> AsyncIterator[dict[str, Any]]:
        assert self.proc.stdout is not None
        while True:
            try:
                raw = await self.proc.stdout.readline()
            except ValueError:  # a line over the limit: not an event of ours
                logger.warning("over-long line from the training process skipped")
                continue
            if not raw:
                return
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                doc = json.loads(text)
            except json.JSONDecodeError:
                logger.warning("non-JSON line from the training process: %.200s", text)
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


class SubprocessLauncher:
    def __init__(self, *, python: str = sys.executable, nice: int = 10, env: dict[str, str] | None = None) -> None:
        self.python = python
        self.nice = nice
        self.env = env  # extra environment for the child (on top of the service's)

    def command(self, config: Path) -> list[str]:
        cmd = [self.python, "-m", "trainer.training.run", "--config", str(config)]
        nice = shutil.which("nice")
        if self.nice and nice:
            cmd = [nice, "-n", str(self.nice), *cmd]
        return cmd

    async def start(self, config: Path, log_path: Path) -> RecipeProcess:
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
        logger.info("training process %d started: %s", proc.pid, config)
        return RecipeProcess(proc, log_path, log_file)
