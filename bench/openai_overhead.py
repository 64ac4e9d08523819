"""The OpenAI-compatible gateway against the raw engine server, on the same GGUF, in one run.

Raw: `python -m agent_runner.llamacpp_server` (llama-cpp-python's `llama_cpp.server` with
llama.cpp's extra buffer types off, which these CPUs need) on the bundled GGUF, asked through its
`/v1/completions` with the very prompt the runner renders (`render_prompt`), so both sides decode
the same tokens. Ours: gateway, agent-runner (llama.cpp engine on the same GGUF, same threads and
context) and log-miner as processes on an isolated vhost/database/bucket, asked through
`/v1/chat/completions` with the OpenAI SDK, every completion logged and mined as usual.

Both stream. Per request: time to first token (the first chunk with text), decode tokens/s (the
tokens after the first over the time from the first chunk to the last; tokens counted with the
model's own tokenizer on the final text, the same way for both sides). Each level sends every
prompt once per client, after one warm-up request. The raw server runs first, alone, then ours.

    .venv/bin/python -m bench.openai_overhead [--levels 1,4] [--max-tokens 64] [--threads 1]

Targets (issue 11): decode tokens/s ≥ 0.9× the raw server's, time to first token within 30 ms of
it, at 1 and 4 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai

from modelkit.base_model import bundled_gguf_path
from modelkit.chat_format import STOP_STRINGS, render_prompt
from tests.harness import free_port, isolated_env, run_path, wait_until

PROMPTS = [
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "Name three primary colours.",
    "Translate 'good morning' into German.",
    "List the first five prime numbers.",
    "Tell me a fun fact about octopuses.",
    "Summarise: the cat sat on the mat and then slept all day.",
    "Describe a sunset in two sentences.",
]


@dataclass
class Sample:
    ttft_s: float
    decode_tps: float | None
    tokens: int
    total_s: float


class Tokens:
    def __init__(self, model: Path) -> None:
        import llama_cpp

        self.llm = llama_cpp.Llama(str(model), vocab_only=True, verbose=False)

    def count(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=True))


async def measure(stream, tokens: Tokens) -> Sample:
    """`stream()` returns an async iterator of text pieces (the request is sent when it is called)."""
    started = time.perf_counter()
    first = last = None
    text = ""
    async for piece in await stream():
        if piece:
            now = time.perf_counter()
            first = first if first is not None else now
            last = now
            text += piece
    done = time.perf_counter()
    n = tokens.count(text)
    decode = (n - 1) / (last - first) if first is not None and last is not None and last > first and n > 1 else None
    return Sample(ttft_s=(first or done) - started, decode_tps=decode, tokens=n, total_s=done - started)


def raw_client(base_url: str, max_tokens: int):
    client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=300)

    def ask(prompt: str):
        async def stream():
            resp = await client.completions.create(
                model="gemma", prompt=render_prompt([{"role": "user", "content": prompt}]), max_tokens=max_tokens,
                temperature=0, stop=list(STOP_STRINGS), stream=True)

            async def pieces():
                async for chunk in resp:
                    yield chunk.choices[0].text if chunk.choices else ""
            return pieces()
        return stream
    return ask


def gateway_client(base_url: str, api_key: str, max_tokens: int):
    client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=300)

    def ask(prompt: str):
        async def stream():
            resp = await client.chat.completions.create(
                model="production", messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
                temperature=0, stream=True)

            async def pieces():
                async for chunk in resp:
                    yield chunk.choices[0].delta.content if chunk.choices else ""
            return pieces()
        return stream
    return ask


async def run_level(ask, clients: int, tokens: Tokens) -> dict:
    await measure(ask(PROMPTS[0]), tokens)  # warm-up

    async def client(i: int) -> list[Sample]:
        order = PROMPTS[i % len(PROMPTS):] + PROMPTS[:i % len(PROMPTS)]
        return [await measure(ask(p), tokens) for p in order]

    started = time.perf_counter()
    samples = [s for batch in await asyncio.gather(*(client(i) for i in range(clients))) for s in batch]
    wall = time.perf_counter() - started
    decodes = [s.decode_tps for s in samples if s.decode_tps is not None]
    return {"clients": clients, "requests": len(samples), "ttft_p50_ms": round(statistics.median(
        s.ttft_s for s in samples) * 1000, 1), "decode_tps_p50": round(statistics.median(decodes), 1),
        "tokens": sum(s.tokens for s in samples), "tokens_per_s_all": round(sum(s.tokens for s in samples) / wall, 1)}


async def run_levels(make_ask, levels: list[int], tokens: Tokens, side: str) -> list[dict]:
    ask = make_ask()  # its client lives on this event loop
    out = []
    for n in levels:
        out.append(await run_level(ask, n, tokens))
        print(json.dumps({"side": side, **out[-1]}), flush=True)
    return out


def start_raw(model: Path, threads: int, n_ctx: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "agent_runner.llamacpp_server", "--model", str(model), "--model_alias", "gemma",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads),
         "--n_threads_batch", str(threads), "--interrupt_requests", "False"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, "ENGINE__USE_EXTRA_BUFTS": "false"})
    url = f"http://127.0.0.1:{port}/v1"
    wait_until(lambda: process.poll() is None and httpx.get(f"{url}/models", timeout=2).status_code == 200, 120,
               what="the raw llama_cpp server")
    return process, url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="1,4")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads on both sides (the runner's default "
                                                             "on 2 cores)")
    ap.add_argument("--n-ctx", type=int, default=4096)
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    model = bundled_gguf_path()
    tokens = Tokens(model)
    results: dict[str, list[dict]] = {"raw": [], "gateway": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        process, url = start_raw(model, args.threads, args.n_ctx, tmp_path / "raw.log")
        try:
            results["raw"] = asyncio.run(run_levels(lambda: raw_client(url, args.max_tokens), levels, tokens, "raw"))
        finally:
            process.terminate()
            process.wait(30)
        engine = {"ENGINE__KIND": "llamacpp", "ENGINE__N_THREADS": str(args.threads), "ENGINE__N_CTX": str(args.n_ctx)}
        with isolated_env(tmp_path) as env, run_path(env, tmp_path / "logs", prefix="oai", engine=engine) as path:
            results["gateway"] = asyncio.run(run_levels(
                lambda: gateway_client(f"{path.gateway.url}/v1", path.api_key, args.max_tokens), levels, tokens,
                "gateway"))
    print()
    print("| clients | decode tok/s raw | gateway | ÷ raw (target ≥ 0.9) | TTFT p50 ms raw | gateway | "
          "Δ ms (target ≤ 30) | tokens/s all requests raw / gateway |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for raw, ours in zip(results["raw"], results["gateway"], strict=True):
        print(f"| {raw['clients']} | {raw['decode_tps_p50']} | {ours['decode_tps_p50']} | "
              f"{ours['decode_tps_p50'] / raw['decode_tps_p50']:.2f} | {raw['ttft_p50_ms']} | {ours['ttft_p50_ms']} | "
              f"{ours['ttft_p50_ms'] - raw['ttft_p50_ms']:+.1f} | {raw['tokens_per_s_all']} / "
              f"{ours['tokens_per_s_all']} |")


if __name__ == "__main__":
    main()
