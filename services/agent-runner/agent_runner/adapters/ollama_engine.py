"""Engine: an Ollama server (`OLLAMA_HOST`), through the `ollama` client.

`raw=True` sends our own rendered Gemma prompt untouched, so the turn format stays the
project's; the exported Modelfile carries the same template for Ollama's own chat API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import httpx
from ollama import AsyncClient, ResponseError

from ..domain import EngineError
from ..ports import Chunk


class OllamaEngine:
    name = "ollama"

    def __init__(self, host: str, model: str, *, model_version: str | None = None, keep_alive: str = "30m",
                 timeout_s: float = 300.0, seed: int = 0) -> None:
        self.client = AsyncClient(host=host, timeout=timeout_s)
        self.host = host
        self.model = model
        self.model_version = model_version or model
        self.keep_alive = keep_alive
        self.seed = seed

    async def generate(self, prompt: str, *, max_tokens: int, temperature: float,
                       stop: Sequence[str]) -> AsyncIterator[Chunk]:
        options = {"num_predict": max_tokens, "temperature": temperature, "stop": list(stop), "seed": self.seed}
        try:
            stream = await self.client.generate(
                model=self.model, prompt=prompt, raw=True, stream=True, options=options, keep_alive=self.keep_alive
            )
            async for part in stream:
                if part.done:
                    yield Chunk(
                        part.response or "",
                        prompt_tokens=part.prompt_eval_count,
                        completion_tokens=part.eval_count,
                        finish_reason="length" if part.done_reason == "length" else "stop",
                    )
                    return
                if part.response:
                    yield Chunk(part.response)
        except (ResponseError, ConnectionError, httpx.HTTPError) as exc:
            raise EngineError(f"ollama at {self.host}: {exc}") from exc
        raise EngineError(f"ollama at {self.host}: stream ended before done")

    async def ping(self) -> None:
        await self.client.list()

    async def close(self) -> None:
        await self.client.close()
