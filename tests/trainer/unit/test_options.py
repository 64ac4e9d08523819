"""Training options (contracts.LoraOptions) and the job file."""

from __future__ import annotations

import pytest
from contracts.learning import LoraOptions
from pydantic import ValidationError

from trainer.training.job import TrainingJobSpec


def test_options_from_before_the_precision_and_clipping_fields_still_validate():
    old = {"rank": 8, "alpha": 16, "learning_rate": 1e-4, "max_steps": 10, "quantization": "none"}
    opts = LoraOptions.model_validate(old)

    assert opts.precision == "auto" and opts.max_grad_norm == 1.0


@pytest.mark.parametrize(
    "bad",
    [
        {"rank": 0},
        {"dropout": 1.0},
        {"learning_rate": 0},
        {"max_seq_len": 32},
        {"batch_size": 0},
        {"precision": "fp16"},
        {"lr_schedule": "step"},
        {"max_grad_norm": 0},
    ],
)
def test_rejects_invalid_options(bad):
    with pytest.raises(ValidationError):
        LoraOptions.model_validate(bad)


def test_clipping_can_be_turned_off():
    assert LoraOptions(max_grad_norm=None).max_grad_norm is None


def test_job_file_needs_paths_and_rejects_unknown_keys(tmp_path):
    job = TrainingJobSpec.model_validate(
        {
            "train_path": str(tmp_path / "t.jsonl"),
            "base_model": "m.gguf",
            "output_dir": str(tmp_path / "o"),
            "checkpoint_dir": str(tmp_path / "c"),
            "options": {"rank": 4},
        }
    )
    assert job.resume is True and job.val_path is None and job.options.rank == 4

    with pytest.raises(ValidationError):
        TrainingJobSpec.model_validate(
            {
                "train_path": "t",
                "base_model": "m",
                "output_dir": "o",
                "checkpoint_dir": "c",
                "epochs": 2,
            }
        )
