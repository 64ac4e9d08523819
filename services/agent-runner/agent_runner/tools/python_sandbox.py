"""python: run model-written code in a bubblewrap sandbox.

    prlimit (CPU s, address space, file size, processes) → bwrap --unshare-all (no network,
    own pid/ipc/uts namespaces) --ro-bind / / (read-only root) --tmpfs /tmp, a fresh work dir
    bound read-write at /tmp/work (the only writable place that outlives the run)
    --die-with-parent --new-session → python3 -I main.py

When the runner is root the sandbox runs as an unprivileged uid (nobody by default, via
setpriv): the process limit only binds non-root users, and nothing in the sandbox should be
root anyway.
A wall-clock timeout kills the sandbox (its pid namespace dies with bwrap); output is capped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from contracts import FunctionSpec, ToolSpec

from ..domain import ToolError

MAX_CODE_CHARS = 20_000
SANDBOX_DIR = "/tmp/work"


class PythonTool:
    name = "python"
    spec = ToolSpec(
        function=FunctionSpec(
            name="python",
            description=(
                "Run a Python 3 program in a sandbox without network access and return its stdout, "
                "stderr and exit code. Print what you want to see."
            ),
            parameters={
                "type": "object",
                "properties": {"code": {"type": "string", "minLength": 1, "maxLength": MAX_CODE_CHARS}},
                "required": ["code"],
                "additionalProperties": False,
            },
        )
    )

    def __init__(self, *, bwrap: str = "/usr/bin/bwrap", python: str = "/usr/bin/python3", timeout_s: float = 10.0,
                 cpu_s: int = 5, memory_mb: int = 512, max_output_bytes: int = 64 * 1024,
                 file_size_mb: int = 16, max_processes: int = 32, sandbox_uid: int = 65534,
                 prlimit: str = "/usr/bin/prlimit", setpriv: str = "/usr/bin/setpriv") -> None:
        self.bwrap = bwrap
        self.python = python
        self.prlimit = prlimit
        self.setpriv = setpriv
        self.timeout_s = timeout_s
        self.cpu_s = cpu_s
        self.memory_bytes = memory_mb * 1024 * 1024
        self.file_size_bytes = file_size_mb * 1024 * 1024
        self.max_processes = max_processes
        self.max_output_bytes = max_output_bytes
        self.sandbox_uid = sandbox_uid if os.geteuid() == 0 else None

    def command(self, work_dir: Path) -> list[str]:
        # setpriv rather than Popen(user=...): uvloop (uvicorn's loop) does not take those arguments.
        as_user = []
        if self.sandbox_uid is not None:
            uid = str(self.sandbox_uid)
            as_user = [self.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        limits = [
            self.prlimit,
            f"--cpu={self.cpu_s}",
            f"--as={self.memory_bytes}",
            f"--fsize={self.file_size_bytes}",
            f"--nproc={self.max_processes}",
            "--",
        ]
        sandbox = [
            self.bwrap,
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--proc", "/proc",
            "--tmpfs", "/tmp",
            "--bind", str(work_dir), SANDBOX_DIR,
            "--chdir", SANDBOX_DIR,
            "--clearenv",
            "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
            "--setenv", "HOME", SANDBOX_DIR,
            "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
            "--",
        ]
        return [*as_user, *limits, *sandbox, self.python, "-I", "main.py"]

    async def run(self, arguments: dict[str, Any]) -> dict[str, Any]:
        if not shutil.which(self.bwrap):
            raise ToolError("the python sandbox is not available on this runner (bubblewrap missing)")
        work_dir = Path(tempfile.mkdtemp(prefix="agentloop-python-"))
        try:
            (work_dir / "main.py").write_text(arguments["code"], encoding="utf-8")
            if self.sandbox_uid is not None:
                os.chown(work_dir, self.sandbox_uid, self.sandbox_uid)
            return await self._execute(work_dir)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)

    async def _execute(self, work_dir: Path) -> dict[str, Any]:
        proc = await asyncio.create_subprocess_exec(
            *self.command(work_dir),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        stdout, stderr = _Capped(self.max_output_bytes), _Capped(self.max_output_bytes)
        timed_out = False
        try:
            async with asyncio.timeout(self.timeout_s):
                await asyncio.gather(stdout.drain(proc.stdout), stderr.drain(proc.stderr), proc.wait())
        except TimeoutError:
            timed_out = True
        finally:
            if proc.returncode is None:  # timed out, or the run itself was cancelled
                _kill(proc)
                with contextlib.suppress(ProcessLookupError):
                    await asyncio.shield(proc.wait())
        return {
            "exit_code": proc.returncode,
            "stdout": stdout.text(),
            "stderr": stderr.text(),
            "timed_out": timed_out,
            "truncated": stdout.truncated or stderr.truncated,
        }


class _Capped:
    """Keeps the first `limit` bytes of a stream and drains the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.truncated = False

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while block := await stream.read(65536):
            room = self.limit - len(self.data)
            if room > 0:
                self.data += block[:room]
            if len(block) > room:
                self.truncated = True

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
