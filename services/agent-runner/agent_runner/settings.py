"""Settings of the agent-runner, composed from the shared fragments (env vars nest with `__`)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

from screening.policy import ScreeningSettings
from servicekit.settings import HttpSettings, S3Settings, ServiceSettings


class EngineSettings(BaseModel):
    """`ENGINE__*`: which LLM engine serves runs and how it is loaded."""

    kind: Literal["llamacpp", "ollama", "openai", "scripted"] = "llamacpp"
    model_path: str | None = Field(
        default=None, description="GGUF file to serve at start-up; default: the registry's production version"
    )
    cache_dir: str | None = Field(
        default=None, description="where deployed GGUFs are downloaded; default: $AGENTLOOP_MODEL_CACHE/models"
    )
    model_version: str | None = Field(default=None, description="reported version; default: derived")
    n_ctx: int = Field(default=4096, ge=256)
    # One core is left to the event loop, broker client and the co-located stack: llama.cpp's
    # worker threads spin while they wait, and on this 2-core machine two threads sharing with
    # any other busy process measured 4.6 tok/s against 15.8 tok/s for one (docs/benchmarks.md).
    n_threads: int = Field(default_factory=lambda: max(1, (os.cpu_count() or 1) - 1), ge=1)
    # llama.cpp's extra buffer types repack quantized weights for AMX; on the CPUs we run on
    # that path faults (SIGILL/SIGSEGV in ldtilecfg), so it is off unless asked for.
    use_extra_bufts: bool = False
    repeat_penalty: float = Field(default=1.0, ge=0.0)
    seed: int = 0
    ollama_model: str | None = None
    ollama_keep_alive: str = "30m"
    openai_base_url: str | None = None
    openai_model: str | None = None
    openai_api_key: SecretStr | None = None
    request_timeout_s: float = Field(default=300.0, gt=0, description="ollama/openai HTTP timeout")
    script: str = Field(default="Done.", description="scripted engine: the reply it gives")
    constrained: Literal["auto", "off"] = Field(
        default="auto",
        description="auto: decode tool calls under the offered tools' grammar where the engine can; off: freely. "
                    "A run's options.constrained overrides it",
    )


class ToolSettings(BaseModel):
    """`TOOLS__*`: server-side tools."""

    enabled: str | None = Field(default=None, description="comma-separated tool names; default: all registered")
    http_allowlist: str = Field(default="", description="comma-separated hosts http_get may reach; empty: none")
    http_timeout_s: float = Field(default=10.0, gt=0)
    http_max_bytes: int = Field(default=256 * 1024, ge=1)
    python_bwrap: str = "/usr/bin/bwrap"
    python_executable: str = "/usr/bin/python3"
    python_timeout_s: float = Field(default=10.0, gt=0)
    python_cpu_s: int = Field(default=5, ge=1)
    python_memory_mb: int = Field(default=512, ge=32)
    python_max_output_bytes: int = Field(default=64 * 1024, ge=256)


class RunnerSettings(BaseModel):
    """`RUNNER__*`: streaming behaviour."""

    token_flush_chars: int = Field(default=32, ge=1, description="batch streamed text up to this many chars")
    token_flush_ms: float = Field(default=50.0, ge=0, description="or until this much time has passed")
    # llama.cpp contexts are loaded with this many sequences: GroupThink samples decode together.
    groupthink_max_samples: int = Field(
        default=8, ge=1, le=64, description="most GroupThink samples per model turn; a run asking more fails"
    )
    extra_models: int = Field(
        default=1, ge=0, le=8,
        description="model versions (candidate, older ones) a runner loads beside production for the runs that "
                    "name them in options.model; least recently used makes room; 0: production only",
    )
    model_memory_reserve_mb: int = Field(
        default=1024, ge=0,
        description="memory that must stay available after loading such a version; a run that would break it "
                    "is refused (model_not_served) with the numbers",
    )
    legacy_events: bool = Field(
        default=True,
        description="also publish AgentRunCompleted/AgentRunFailed and InteractionLogged beside AgentRunFinished "
        "(and reply with the former), for consumers not yet switched (decision 0016)",
    )


class AgentRunnerSettings(ServiceSettings):
    http: HttpSettings = HttpSettings(port=8101)
    s3: S3Settings
    engine: EngineSettings = EngineSettings()
    tools: ToolSettings = ToolSettings()
    runner: RunnerSettings = RunnerSettings()
    screening: ScreeningSettings = ScreeningSettings()
    ollama_host: str = Field(default="http://127.0.0.1:11434", description="OLLAMA_HOST, as the ollama CLI reads it")


def split_csv(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]
