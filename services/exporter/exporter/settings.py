"""Settings of the exporter, composed from the shared fragments.

Environment (nested with `__`), beyond the shared BROKER/DATABASE/S3/HTTP/LOG/INSTANCE_ID:

| variable | default | meaning |
|---|---|---|
| EXPORT__WORK_DIR | ~/.cache/agentloop/exporter | per-job scratch: adapter, GGUF files, the process's stderr |
| EXPORT__MODEL_CACHE_DIR | AGENTLOOP_MODEL_CACHE | GGUF → HF conversion cache; registered GGUFs downloaded for Ollama |
| EXPORT__QUANTS | ["Q4_K_M","Q5_K_M","Q8_0"] | the quant ladder (JSON list) |
| EXPORT__PARITY_TOKENS | 16 | greedy tokens compared per parity prompt |
| EXPORT__UPLOAD_F16 | true | also keep the F16 GGUF in S3 (kind gguf, quantization F16) |
| EXPORT__LEASE_TTL_S / EXPORT__HEARTBEAT_S | 60 / 15 | job lease; heartbeat at most half the TTL |
| EXPORT__POLL_INTERVAL_S | 5 | how often an idle instance looks for runnable jobs |
| EXPORT__MAX_ATTEMPTS / EXPORT__RETRY_DELAY_S | 3 / 10 | export processes started before a crash fails the job; delay between |
| EXPORT__NICE | 10 | niceness of the export process (0: none) |
| EXPORT__PYTHON | this interpreter | interpreter that runs `-m exporter.export.run` |
| OLLAMA__HOST | (unset) | with it set, every new production version is pushed to this Ollama |
| OLLAMA__MODEL_PREFIX | agentloop | Ollama model name: `<prefix>:<version>` |
| OLLAMA__TIMEOUT_S | 600 | per request (blob uploads are large) |
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pydantic import BaseModel, Field

from servicekit.settings import HttpSettings, LeaseSettings, S3Settings, ServiceSettings


def cache_root() -> Path:
    return Path(os.environ.get("AGENTLOOP_MODEL_CACHE", Path.home() / ".cache" / "agentloop"))


class ExportSettings(LeaseSettings):
    env_prefix = "EXPORT"

    work_dir: Path = Field(default_factory=lambda: cache_root() / "exporter")
    model_cache_dir: Path | None = None
    quants: list[str] = Field(default_factory=lambda: ["Q4_K_M", "Q5_K_M", "Q8_0"], min_length=1)
    parity_tokens: int = Field(default=16, ge=1)
    upload_f16: bool = True
    nice: int = Field(default=10, ge=0, le=19)
    python: str = sys.executable



class OllamaSettings(BaseModel):
    host: str | None = None
    model_prefix: str = "agentloop"
    timeout_s: float = Field(default=600.0, gt=0)


class ExporterSettings(ServiceSettings):
    http: HttpSettings = HttpSettings(port=8105)
    s3: S3Settings  # S3__ACCESS_KEY / S3__SECRET_KEY have no defaults
    export: ExportSettings = Field(default_factory=ExportSettings)
    ollama: OllamaSettings = Field(default_factory=OllamaSettings)
