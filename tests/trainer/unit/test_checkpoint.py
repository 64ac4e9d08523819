"""Checkpoint directories: atomic writes, latest, retention."""

from __future__ import annotations

import json

import torch

from trainer.training import checkpoint


def state(step: int) -> checkpoint.TrainingState:
    return checkpoint.TrainingState(
        step=step,
        total_steps=10,
        fingerprint="abc",
        options={"rank": 4},
        optimizer={"state": {}},
        scheduler={"last_epoch": step},
        rng={"torch": torch.get_rng_state()},
        tokens_seen=100 * step,
        loss_history=[1.0] * step,
        data_position={"epoch": 0, "micro_batch": step},
    )


def fake_adapter(path):
    (path / "adapter_model.safetensors").write_bytes(b"weights")


def test_writes_a_complete_checkpoint_that_reads_back(tmp_path):
    path = checkpoint.write(tmp_path, state(4), fake_adapter, keep=2)

    assert path.name == "step-000004"
    assert checkpoint.read(path).step == 4 and checkpoint.read(path).scheduler == {"last_epoch": 4}
    assert json.loads((path / "state.json").read_text())["data_position"] == {
        "epoch": 0,
        "micro_batch": 4,
    }
    assert (path / "adapter_model.safetensors").exists()


def test_latest_ignores_unfinished_writes(tmp_path):
    checkpoint.write(tmp_path, state(2), fake_adapter, keep=5)
    (tmp_path / ".tmp-step-000004").mkdir()  # killed while writing step 4
    (tmp_path / "step-000006").mkdir()  # not ours / incomplete

    assert checkpoint.latest(tmp_path).name == "step-000002"


def test_latest_of_a_missing_directory_is_none(tmp_path):
    assert checkpoint.latest(tmp_path / "nothing") is None


def test_keeps_only_the_newest_checkpoints(tmp_path):
    for step in (2, 4, 6, 8):
        checkpoint.write(tmp_path, state(step), fake_adapter, keep=2)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000006", "step-000008"]
