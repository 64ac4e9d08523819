"""`python -m exporter.export.run` as a real child process through servicekit's WorkerLauncher:
its protocol (JSON lines on stdout, logs on stderr) for inputs it must refuse — cheap runs that
stop before any model is loaded (the full export is test_export_flow's)."""

from __future__ import annotations

import json
from pathlib import Path

from exporter.domain import Failed, Stage, parse_event
from exporter.export.job import ExportJobSpec
from servicekit.worker_process import WorkerLauncher


async def _run(tmp_path: Path, config: str) -> tuple[list[dict], int, str]:
    path = tmp_path / "job.json"
    path.write_text(config)
    proc = await WorkerLauncher("exporter.export.run", nice=0).start(path, tmp_path / "export.log")
    lines = [doc async for doc in proc.lines()]
    return lines, await proc.wait(), proc.stderr_tail()


async def test_an_unknown_base_is_one_failed_line_and_exit_status_1(tmp_path: Path) -> None:
    spec = ExportJobSpec(adapter_dir=tmp_path / "adapter", base_model="/nowhere/base.gguf", out_dir=tmp_path / "out",
                         version="v1")
    lines, status, stderr = await _run(tmp_path, spec.model_dump_json())
    events = [parse_event(doc) for doc in lines]
    assert events[0] == Stage("resolve_base", False)
    assert isinstance(events[-1], Failed) and events[-1].permanent
    assert "unknown base model '/nowhere/base.gguf'" in events[-1].reason
    assert status == 1 and "Traceback" in stderr  # the traceback goes to the log, not the event stream


async def test_an_invalid_job_file_is_refused_before_any_work(tmp_path: Path) -> None:
    lines, status, _ = await _run(tmp_path, json.dumps({"version": "v1", "quants": []}))
    assert [d["event"] for d in lines] == ["failed"] and status == 1
    assert "ValidationError" in lines[0]["reason"]
