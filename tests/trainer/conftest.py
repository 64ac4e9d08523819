"""Fixtures for the training recipe tests: a tiny Gemma 3 checkpoint, BFCL-derived data, the
real base model converted once per cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import bfcl_file


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.trainer.tiny_model import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("tiny-gemma3"))


@pytest.fixture(scope="session")
def bfcl_records() -> list[dict]:
    from trainer.training.bfcl_examples import examples_from_file

    return list(examples_from_file(bfcl_file("simple.jsonl")))


@pytest.fixture(scope="session")
def real_base_dir() -> Path:
    """The bundled Gemma 3 270M as an HF checkpoint (first use converts the GGUF: ~2 min)."""
    from modelkit.base_model import bundled_gguf_path
    from trainer.training.base_weights import resolve_base_model

    return resolve_base_model(bundled_gguf_path())


@pytest.fixture(scope="session")
def real_tokenizer(real_base_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(real_base_dir)
