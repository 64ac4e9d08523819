"""Fixtures for the model kit tests: the bundled Gemma 3 270M as GGUF and as an HF checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bundled_gguf() -> Path:
    from modelkit.base_model import bundled_gguf_path

    return bundled_gguf_path()


@pytest.fixture(scope="session")
def hf_base_dir(bundled_gguf: Path) -> Path:
    """The bundled model as an HF checkpoint (the first use on a machine converts it: ~2 min)."""
    from modelkit.hf_base import resolve_base_model

    return resolve_base_model(bundled_gguf)
