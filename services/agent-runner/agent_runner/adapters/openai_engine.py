"""Engine: any OpenAI-compatible server (llama.cpp server, vLLM, TGI) via the `openai` SDK.

It uses the plain completions endpoint with our own rendered prompt, never the server's chat
template, so the turn format (and the training data it produces) stays the project's.

Constraint: the tools' GBNF grammar (modelkit.tool_grammar) goes in the request's `grammar`
field, which llama.cpp's servers (llama_cpp.server, llama-server) honour on completions; the
integration test proves it on llama_cpp.server. A server that ignores the field (vLLM wants
`guided_grammar`, OpenAI has no such field) decodes freely while the turn is reported as
constrained: turn the constraint off (`ENGINE__CONSTRAINED=off`) for such servers. There the
grammar masks the whole vocabulary at every step (llama-cpp-python's sampler chain), which is
slower than the embedded engine's check-then-mask.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from openai import APIError, AsyncOpenAI

from modelkit.tool_grammar import ToolConstraint, build_grammar

from ..domain import EngineError
from ..ports import Chunk


class OpenAIEngine:
    name = "openai"

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, model_version: str | None = None,
                 timeout_s: float = 300.0, seed: int = 0) -> None:
        # Local servers need no key, but the SDK insists on one.
        self.client = AsyncOpenAI(base_url=base_url, api_key=api_key or "unused", timeout=timeout_s, max_retries=0)
        self.base_url = base_url
        self.model = model
        self.model_version = model_version or model
        self.seed = seed

    async def generate(self, prompt: str, *, max_tokens: int, temperature: float,
                       stop: Sequence[str], constraint: ToolConstraint | None = None) -> AsyncIterator[Chunk]:
        prompt_tokens = completion_tokens = None
        finish: str | None = None
        chunks = 0
        grammar = build_grammar(constraint) if constraint is not None else None
        try:
            stream = await self.client.completions.create(
                model=self.model, prompt=prompt, max_tokens=max_tokens, temperature=temperature,
                stop=list(stop)[:4], seed=self.seed, stream=True, stream_options={"include_usage": True},
                extra_body={"grammar": grammar.text} if grammar is not None else None,
            )
            async with stream:
                async for event in stream:
                    if event.usage is not None:
                        prompt_tokens = event.usage.prompt_tokens
                        completion_tokens = event.usage.completion_tokens
                    for choice in event.choices:
                        finish = choice.finish_reason or finish
                        if choice.text:
                            chunks += 1
                            yield Chunk(choice.text)
        except APIError as exc:
            raise EngineError(f"openai-compatible server at {self.base_url}: {exc}") from exc
        # Servers that ignore include_usage report no counts: fall back to the chunk count.
        yield Chunk("", prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
                    if completion_tokens is not None else chunks, finish_reason=finish,
                    constrained=grammar is not None,
                    unconstrained_tools=grammar.unconstrained_tools if grammar is not None else ())

    async def ping(self) -> None:
        await self.client.models.list()

    async def close(self) -> None:
        await self.client.close()
