"""The Ollama adapter's requests, seen through an httpx MockTransport (no Ollama runs here):
blob upload by digest, create with the Modelfile's template and parameters, a chat check, the
previous model unloaded with keep_alive 0."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import ollama
import pytest

from exporter.adapters.ollama_server import ModelServerError, OllamaServer, ollama_model_name, parse_modelfile
from modelkit.chat_format import STOP_STRINGS
from modelkit.export import modelfile_text
from modelregistry import ModelFile, ModelVersion


class FakeOllama:
    """Answers like Ollama's HTTP API and records every request."""

    def __init__(self, *, chat_content: str = "OK", missing: frozenset[str] = frozenset()) -> None:
        self.requests: list[tuple[str, str, dict | bytes]] = []
        self.chat_content = chat_content
        self.missing = missing

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        path = request.url.path
        doc = json.loads(body) if body and path != "" and not path.startswith("/api/blobs/") else body
        self.requests.append((request.method, path, doc))
        if path.startswith("/api/blobs/"):
            return httpx.Response(201)
        if path == "/api/create":
            return httpx.Response(200, json={"status": "success"})
        if path == "/api/chat":
            return httpx.Response(200, json={"model": doc["model"], "created_at": "2026-01-01T00:00:00Z", "done": True,
                                             "message": {"role": "assistant", "content": self.chat_content}})
        if path == "/api/generate":
            if doc["model"] in self.missing:
                return httpx.Response(404, json={"error": f"model '{doc['model']}' not found"})
            return httpx.Response(200, json={"model": doc["model"], "created_at": "2026-01-01T00:00:00Z",
                                             "response": "", "done": True, "done_reason": "unload"})
        return httpx.Response(404, json={"error": "unexpected"})


def _version(gguf: Path, sha: str | None = None) -> ModelVersion:
    f = ModelFile("Q4_K_M", "s3://b/models/v1/v1.Q4_K_M.gguf", sha or hashlib.sha256(gguf.read_bytes()).hexdigest(),
                  gguf.stat().st_size, "gguf")
    return ModelVersion(version="gemma3-270m-abcd1234", base_model="bundled", status="candidate", quantization="Q4_K_M",
                        files=[f], lineage={}, metrics={}, job_id="j", dataset_id="d", adapter_uri=None,
                        evaluation_id="e", created_at=datetime.now(UTC))


def _server(fake: FakeOllama) -> OllamaServer:
    return OllamaServer(ollama.AsyncClient(host="http://ollama.test:11434", transport=httpx.MockTransport(fake)))


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "gemma3-270m-abcd1234.Q4_K_M.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    return path


def test_modelfile_fields_carry_the_projects_template_and_stops() -> None:
    fields = parse_modelfile(modelfile_text("v.Q4_K_M.gguf"))
    assert "<start_of_turn>" in fields["template"] and '"""' not in fields["template"]
    assert fields["parameters"]["stop"] == list(STOP_STRINGS)
    assert fields["parameters"]["temperature"] == 0


async def test_publish_uploads_creates_checks_and_unloads_the_previous_model(gguf: Path) -> None:
    fake = FakeOllama()
    modelfile = modelfile_text(gguf.name)
    name = await _server(fake).publish(_version(gguf), gguf, modelfile, "gemma3-270m-q4_k_m@base")
    assert name == "agentloop:gemma3-270m-abcd1234"
    digest = "sha256:" + hashlib.sha256(gguf.read_bytes()).hexdigest()
    methods_paths = [(m, p) for m, p, _ in fake.requests]
    assert methods_paths == [("POST", f"/api/blobs/{digest}"), ("POST", "/api/create"), ("POST", "/api/chat"),
                             ("POST", "/api/generate")]
    assert fake.requests[0][2] == gguf.read_bytes()
    create = fake.requests[1][2]
    assert create["model"] == name and create["files"] == {gguf.name: digest}
    assert create["template"] == parse_modelfile(modelfile)["template"]
    assert create["parameters"]["stop"] == list(STOP_STRINGS)
    assert fake.requests[2][2]["model"] == name and fake.requests[2][2]["messages"][0]["role"] == "user"
    unload = fake.requests[3][2]
    assert unload["model"] == ollama_model_name("agentloop", "gemma3-270m-q4_k_m@base") == \
        "agentloop:gemma3-270m-q4_k_m-base"
    assert unload["keep_alive"] == 0


async def test_a_blob_that_is_not_the_registered_file_is_refused_before_create(gguf: Path) -> None:
    fake = FakeOllama()
    with pytest.raises(ModelServerError, match="the registry holds"):
        await _server(fake).publish(_version(gguf, sha="0" * 64), gguf, None, None)
    assert [p for _, p, _ in fake.requests if not p.startswith("/api/blobs/")] == []


async def test_a_model_that_answers_nothing_fails_the_push(gguf: Path) -> None:
    with pytest.raises(ModelServerError, match="answered nothing"):
        await _server(FakeOllama(chat_content="  ")).publish(_version(gguf), gguf, modelfile_text(gguf.name), None)


async def test_a_previous_model_the_server_never_had_is_not_an_error(gguf: Path) -> None:
    fake = FakeOllama(missing=frozenset({"agentloop:old"}))
    await _server(fake).publish(_version(gguf), gguf, modelfile_text(gguf.name), "old")
    assert fake.requests[-1][1] == "/api/generate"


async def test_without_a_modelfile_the_projects_template_is_used(gguf: Path) -> None:
    fake = FakeOllama()
    await _server(fake).publish(_version(gguf), gguf, None, None)
    create = fake.requests[1][2]
    assert create["template"] == parse_modelfile(modelfile_text(gguf.name))["template"]
    assert len(fake.requests) == 3  # no previous: nothing to unload
