"""Where the trainable base model comes from. The code moved to `modelkit.hf_base` (the exporter
needs the same conversion and norm conventions); these names stay importable from here."""

from modelkit.hf_base import (
    GGUF_NORM_NAMES,
    GGUF_NORM_SHIFT,
    default_cache_dir,
    gguf_tensors,
    resolve_base_model,
)

__all__ = [
    "GGUF_NORM_NAMES",
    "GGUF_NORM_SHIFT",
    "default_cache_dir",
    "gguf_tensors",
    "resolve_base_model",
]
