"""ModelServer on Ollama, through the `ollama` client (httpx underneath):

1. `POST /api/blobs/sha256:<digest>` with the GGUF (`create_blob`; the digest must be the registry's),
2. `POST /api/create` with `files: {name: digest}` and the Modelfile's TEMPLATE / PARAMETER / SYSTEM,
3. `POST /api/chat` with a short message: the model must answer,
4. `POST /api/generate` with `keep_alive: 0` for the previous production model: unloaded.

Model names: `<prefix>:<version>` with the characters Ollama refuses in a tag replaced
(`gemma3-270m-q4_k_m@base` → `agentloop:gemma3-270m-q4_k_m-base`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import ollama

from modelregistry import ModelVersion

logger = logging.getLogger("exporter.ollama")


class ModelServerError(Exception):
    """The server took the model but does not answer with it."""


def ollama_model_name(prefix: str, version: str) -> str:
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "-", version).strip("-.")[:128] or "latest"
    return f"{prefix}:{tag}"


_PARAM_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def parse_modelfile(text: str) -> dict[str, Any]:
    """TEMPLATE, SYSTEM and PARAMETERs of a Modelfile as `/api/create` fields (FROM is replaced by
    the uploaded blob). Repeated parameters (`stop`) become lists; numbers become numbers."""
    out: dict[str, Any] = {}
    params: dict[str, Any] = {}
    i = 0
    while i < len(text):
        m = re.compile(r'(?m)^(FROM|TEMPLATE|SYSTEM|PARAMETER|LICENSE|ADAPTER|MESSAGE)[ \t]+').match(text, i)
        if not m:
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl + 1
            continue
        keyword, i = m.group(1), m.end()
        if text.startswith('"""', i):
            end = text.index('"""', i + 3)
            value, i = text[i + 3:end], end + 3
        else:
            nl = text.find("\n", i)
            value, i = (text[i:] if nl < 0 else text[i:nl]).strip(), len(text) if nl < 0 else nl + 1
        if keyword == "TEMPLATE":
            out["template"] = value
        elif keyword == "SYSTEM":
            out["system"] = value
        elif keyword == "PARAMETER":
            name, _, raw = value.partition(" ")
            raw = raw.strip()
            parsed: Any = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
            if isinstance(parsed, str) and parsed is raw and _PARAM_NUMBER.match(raw):
                parsed = float(raw) if "." in raw else int(raw)
            if name == "stop":
                params.setdefault("stop", []).append(parsed)
            else:
                params[name] = parsed
    if params:
        out["parameters"] = params
    return out


class OllamaServer:
    def __init__(self, client: ollama.AsyncClient, *, prefix: str = "agentloop",
                 check_prompt: str = "Reply with the word OK.", check_tokens: int = 8,
                 keep_alive: str | float = "10m") -> None:
        self.client = client
        self.prefix = prefix
        self.check_prompt = check_prompt
        self.check_tokens = check_tokens
        self.keep_alive = keep_alive

    async def publish(self, version: ModelVersion, gguf: Path, modelfile: str | None,
                      previous_version: str | None) -> str:
        name = ollama_model_name(self.prefix, version.version)
        served = version.gguf()
        digest = await self.client.create_blob(gguf)
        if served is not None and served.sha256 and digest != f"sha256:{served.sha256}":
            raise ModelServerError(f"{gguf}: uploaded {digest}, the registry holds sha256:{served.sha256}")
        fields = parse_modelfile(modelfile) if modelfile else _default_fields(gguf.name)
        await self.client.create(model=name, files={gguf.name: digest}, stream=False, **fields)
        reply = await self.client.chat(model=name, messages=[{"role": "user", "content": self.check_prompt}],
                                       options={"num_predict": self.check_tokens, "temperature": 0},
                                       keep_alive=self.keep_alive)
        message = reply.message
        if not (message.content or "").strip() and not message.tool_calls:
            raise ModelServerError(f"{name} was created but answered nothing to a chat message")
        logger.info("ollama serves %s (%s); it answered %r", name, digest, (message.content or "")[:80])
        if previous_version and (previous := ollama_model_name(self.prefix, previous_version)) != name:
            try:
                await self.client.generate(model=previous, keep_alive=0)
            except ollama.ResponseError as exc:  # never pushed, or deleted since: nothing to unload
                if exc.status_code != 404:
                    raise
                logger.info("previous model %s is not on the server: nothing to unload", previous)
        return name


def _default_fields(gguf_name: str) -> dict[str, Any]:
    """A version without a Modelfile (the bundled base): the project's template and stops."""
    from modelkit.export import modelfile_text

    return parse_modelfile(modelfile_text(gguf_name))
