"""Export of a trained LoRA adapter: merge → F16 GGUF → parity → quant ladder → Modelfile → sha256.

The exporter service runs `export_adapter` in a subprocess; this package holds no service code.
"""

from .gguf_io import GGUFConversionError
from .modelfile import modelfile_text
from .parity import PARITY_CONVERSATIONS, ParityError, default_parity_prompts
from .pipeline import (
    DEFAULT_QUANTS,
    ExportResult,
    export_adapter,
    file_stem,
    merge_adapter,
    sha256_file,
)
from .quantize import QUANT_FTYPES, QuantizeError

__all__ = [
    "DEFAULT_QUANTS",
    "PARITY_CONVERSATIONS",
    "QUANT_FTYPES",
    "ExportResult",
    "GGUFConversionError",
    "ParityError",
    "QuantizeError",
    "default_parity_prompts",
    "export_adapter",
    "file_stem",
    "merge_adapter",
    "modelfile_text",
    "sha256_file",
]
