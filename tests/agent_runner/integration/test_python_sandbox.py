"""The python tool under real bubblewrap: no network, read-only root, one writable work dir,
rlimits, a wall-clock timeout and an output cap."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import pytest

from agent_runner.tools.python_sandbox import PythonTool

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")


async def run(code: str, **options) -> dict:
    return await PythonTool(**options).run({"code": code})


async def test_runs_code_and_returns_its_output():
    result = await run("import sys\nprint(6 * 7)\nprint('oops', file=sys.stderr)\nsys.exit(3)")
    assert result == {"exit_code": 3, "stdout": "42\n", "stderr": "oops\n", "timed_out": False, "truncated": False}


async def test_the_network_is_unreachable():
    code = """
import socket
for address in [("127.0.0.1", 5672), ("1.1.1.1", 53)]:
    try:
        socket.create_connection(address, timeout=2)
        print("connected", address)
    except OSError as exc:
        print("denied", address, exc.errno)
"""
    result = await run(code)
    assert "connected" not in result["stdout"]
    assert result["stdout"].count("denied") == 2  # even the host's RabbitMQ on loopback is out of reach


async def test_writing_outside_the_work_dir_is_denied():
    probe = Path("/var/tmp") / f"agentloop-sandbox-probe-{uuid.uuid4().hex}"
    code = f"""
for path in ["{probe}", "/etc/agentloop-probe", "{Path(__file__).parent / 'probe'}"]:
    try:
        open(path, "w").write("x")
        print("wrote", path)
    except OSError as exc:
        print("denied", exc.strerror)
"""
    result = await run(code)
    assert "wrote" not in result["stdout"] and result["stdout"].count("denied") == 3
    assert not probe.exists()


async def test_writing_inside_the_work_dir_and_tmp_is_allowed():
    code = """
import os
open("notes.txt", "w").write("kept")
open("/tmp/scratch", "w").write("scratch")
print(open("notes.txt").read(), open("/tmp/scratch").read(), os.getcwd())
"""
    result = await run(code)
    assert result["stdout"] == "kept scratch /tmp/work\n", result


async def test_the_timeout_kills_a_busy_loop():
    started = time.monotonic()
    result = await run("while True:\n    pass", timeout_s=1.0, cpu_s=30)
    assert result["timed_out"] is True and result["exit_code"] != 0
    assert time.monotonic() - started < 5


async def test_the_cpu_limit_stops_a_busy_loop():
    result = await run("while True:\n    pass", timeout_s=20.0, cpu_s=1)
    # bwrap reports a child killed by a signal as 128 + signal (SIGXCPU 152, SIGKILL 137)
    assert result["timed_out"] is False and result["exit_code"] in (137, 152)


async def test_the_memory_limit_stops_a_large_allocation():
    result = await run("x = bytearray(1024 * 1024 * 1024)\nprint('allocated')", memory_mb=256)
    assert "allocated" not in result["stdout"] and "MemoryError" in result["stderr"]


async def test_the_process_limit_stops_a_fork_bomb():
    code = """
import os, time
children = 0
try:
    for _ in range(200):
        if os.fork() == 0:
            time.sleep(2)
            os._exit(0)
        children += 1
except OSError:
    pass
print(children)
"""
    result = await run(code, max_processes=16)
    assert int(result["stdout"]) < 16


async def test_output_beyond_the_cap_is_truncated():
    result = await run("print('x' * 1_000_000)", max_output_bytes=1000)
    assert result["truncated"] is True and len(result["stdout"]) == 1000 and result["exit_code"] == 0
