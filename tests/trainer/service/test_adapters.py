"""Adapters that need nothing but this machine: the base-model resolver chain and the recipe
subprocess (started for real with a job file it refuses, so no model is loaded)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from modelkit.base_model import BUNDLED_MODEL_VERSION
from servicekit.worker_process import WorkerLauncher
from trainer.adapters.base_models import BundledModel, ChainResolver, LocalPath
from trainer.domain import UnknownBaseModelError


@pytest.fixture
def resolver() -> ChainResolver:
    return ChainResolver([BundledModel(lambda: Path("/cache/gemma.gguf")), LocalPath()])


async def test_bundled_resolves_to_the_packaged_gguf(resolver: ChainResolver) -> None:
    assert await resolver.resolve("bundled") == "/cache/gemma.gguf"
    assert await resolver.resolve(BUNDLED_MODEL_VERSION) == "/cache/gemma.gguf"


async def test_an_absolute_path_to_a_gguf_or_an_hf_checkpoint_is_taken_as_is(resolver: ChainResolver,
                                                                             tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")

    assert await resolver.resolve(str(gguf)) == str(gguf)
    assert await resolver.resolve(str(hf)) == str(hf)


@pytest.mark.parametrize("name", ["llama-70b", "production", "relative/dir", "/does/not/exist"])
async def test_anything_else_is_an_unknown_base_model(resolver: ChainResolver, name: str) -> None:
    with pytest.raises(UnknownBaseModelError):
        await resolver.resolve(name)


async def test_the_recipe_process_reports_a_bad_job_file_as_a_failed_line_and_exit_1(tmp_path: Path) -> None:
    config = tmp_path / "job.json"
    config.write_text(json.dumps({"unexpected": True}))
    launcher = WorkerLauncher("trainer.training.run", python=sys.executable, nice=5)
    assert launcher.command(config)[:3][1:] == ["-n", "5"]

    proc = await launcher.start(config, tmp_path / "train.log")
    lines = [doc async for doc in proc.lines()]

    assert await proc.wait() == 1
    assert [d["event"] for d in lines] == ["failed"]
    assert "ValidationError" in lines[0]["reason"]
    assert "Traceback" in proc.stderr_tail()
    await proc.kill()  # a no-op once it has exited
