"""EngineLoader adapters: how each engine kind serves a deployed model version.

- llamacpp: the GGUF made local (the bundled base, or an S3 object downloaded into a cache
  directory and checked against its sha256 by `modelregistry.local_gguf_path`), then loaded in
  a worker thread so the event loop keeps serving runs on the current model meanwhile.
- ollama: the exporter pushed the version to Ollama; serving it means using that model name.
- openai, scripted: the server (or script) decides what answers; they cannot switch models.
"""

from __future__ import annotations

import asyncio
import fcntl
from dataclasses import dataclass
from pathlib import Path

from modelregistry import BUNDLED_URI, ModelFile, ModelFileError, local_gguf_path
from servicekit.artifacts import ArtifactStore

from ..domain import ModelLoadError
from ..model_slot import DesiredModel
from ..ports import Engine


@dataclass(frozen=True)
class LlamaParams:
    n_ctx: int
    n_threads: int
    use_extra_bufts: bool
    repeat_penalty: float
    seed: int
    n_seq_max: int = 1  # sequences of the context: GroupThink samples decode together


class GgufFiles:
    """A deployed GGUF as a local file: downloaded once per sha256 into `cache_dir`, verified.

    Replicas on one host may share the cache (a volume): an exclusive file lock per sha256
    makes the second wait for the first's download and then use it, instead of both writing
    the same temporary file.
    """

    def __init__(self, store: ArtifactStore, cache_dir: Path) -> None:
        self.store = store
        self.cache_dir = cache_dir

    async def local_path(self, model: DesiredModel) -> Path:
        file = ModelFile(quantization=None, uri=model.gguf_uri, sha256=model.sha256, size_bytes=0, kind="gguf")
        try:
            return await asyncio.to_thread(self._locked, file)
        except (ModelFileError, OSError) as exc:
            raise ModelLoadError(f"{model.gguf_uri}: {exc}" if model.gguf_uri not in str(exc) else str(exc)) from exc

    def _locked(self, file: ModelFile) -> Path:
        if file.uri == BUNDLED_URI:
            return local_gguf_path(file, self.cache_dir, self.store)  # the package verifies it
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with open(self.cache_dir / f".{file.sha256 or 'unchecked'}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            return local_gguf_path(file, self.cache_dir, self.store)


class LlamaCppLoader:
    reloads = True

    def __init__(self, files: GgufFiles, params: LlamaParams) -> None:
        self.files = files
        self.params = params

    async def load(self, model: DesiredModel) -> Engine:
        from .llamacpp_engine import LlamaCppEngine

        path = await self.files.local_path(model)
        p = self.params
        try:
            return await asyncio.to_thread(
                LlamaCppEngine.load, str(path), model_version=model.model_version, n_ctx=p.n_ctx,
                n_threads=p.n_threads, use_extra_bufts=p.use_extra_bufts, repeat_penalty=p.repeat_penalty,
                seed=p.seed, n_seq_max=p.n_seq_max,
            )
        except (ValueError, RuntimeError, OSError) as exc:  # llama-cpp-python: ValueError on a bad file
            raise ModelLoadError(f"{model.gguf_uri}: llama.cpp could not load {path.name}: {exc}") from exc


class OllamaLoader:
    reloads = True

    def __init__(self, host: str, *, keep_alive: str, timeout_s: float, seed: int) -> None:
        self.host = host
        self.keep_alive = keep_alive
        self.timeout_s = timeout_s
        self.seed = seed

    async def load(self, model: DesiredModel) -> Engine:
        from .ollama_engine import OllamaEngine

        if not model.ollama_model:
            raise ModelLoadError(
                f"model {model.model_version} has no Ollama model name: the exporter pushes to Ollama only "
                "when OLLAMA_HOST is set"
            )
        return OllamaEngine(self.host, model.ollama_model, model_version=model.model_version,
                            keep_alive=self.keep_alive, timeout_s=self.timeout_s, seed=self.seed)


class FixedEngine:
    """openai, scripted: the engine serves what it serves; a deployment is only recorded."""

    reloads = False

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def load(self, model: DesiredModel) -> Engine:
        raise ModelLoadError(f"the {self.kind} engine cannot switch to model {model.model_version}")


def bundled_model(version: str) -> DesiredModel:
    """The bundled base as a wanted model (the fallback when the registry names none)."""
    from contracts import utcnow

    return DesiredModel(version, BUNDLED_URI, "", "production", utcnow())
