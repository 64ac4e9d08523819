"""Fakes of the runner's own ports (Engine, StepSink, RunStore) for use-case tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agent_runner.domain import ModelLoadError
from agent_runner.metrics import RunnerMetrics
from agent_runner.model_slot import DesiredModel
from agent_runner.ports import Chunk, RunRecord
from contracts import AgentRunRequested, AgentRunStep, ChatMessage, Contract, Principal, RunOptions, ToolSpec
from modelkit.tool_grammar import ToolConstraint, build_grammar


class FakeEngine:
    """Replies with the scripted outputs in order (the last one repeats), in small chunks."""

    name = "fake"

    def __init__(self, replies: Sequence[str], *, model_version: str = "fake-v1", chunk_size: int = 4,
                 delay_s: float = 0.0, error: Exception | None = None) -> None:
        self.replies = list(replies)
        self.model_version = model_version
        self.chunk_size = chunk_size
        self.delay_s = delay_s
        self.error = error
        self.prompts: list[str] = []
        self.constraints: list[ToolConstraint | None] = []  # what each turn was asked to decode under
        self.closed_generations = 0

    async def generate(self, prompt: str, *, max_tokens: int, temperature: float,
                       stop: Sequence[str], constraint: ToolConstraint | None = None) -> AsyncIterator[Chunk]:
        self.prompts.append(prompt)
        self.constraints.append(constraint)
        if self.error is not None:
            raise self.error
        reply = self.replies[min(len(self.prompts), len(self.replies)) - 1]
        pieces = [reply[i:i + self.chunk_size] for i in range(0, len(reply), self.chunk_size)] or [""]
        try:
            for piece in pieces:
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                yield Chunk(piece)
            # Plays a constraining engine: the scripted reply is what it is, the report is the grammar's.
            grammar = build_grammar(constraint) if constraint is not None else None
            yield Chunk("", prompt_tokens=len(prompt) // 4, completion_tokens=len(pieces), finish_reason="stop",
                        constrained=grammar is not None,
                        unconstrained_tools=grammar.unconstrained_tools if grammar is not None else ())
        finally:
            self.closed_generations += 1

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


class FakeSink:
    def __init__(self) -> None:
        self.steps: list[AgentRunStep] = []
        self.finals: list[Contract] = []

    async def step(self, step: AgentRunStep) -> None:
        self.steps.append(step)

    async def final(self, message: Contract) -> None:
        self.finals.append(message)

    def kinds(self) -> list[str]:
        return [s.kind for s in self.steps]


class FakeStore:
    def __init__(self) -> None:
        self.inbox: set[str] = set()
        self.rows: dict[str, dict[str, Any]] = {}
        self.outbox: dict[str, Contract] = {}
        self.published: list[Contract] = []

    async def is_processed(self, message_id: str) -> bool:
        return message_id in self.inbox

    async def record(self, record: RunRecord) -> bool:
        if record.message_id in self.inbox:
            return False
        self.inbox.add(record.message_id)
        self.rows[record.row["run_id"]] = record.row
        for message in record.outbox:
            self.outbox.setdefault(message.envelope.message_id, message)
        return True

    async def stored_outcome(self, run_id: str, message_id: str) -> dict[str, Any] | None:
        message = self.outbox.get(message_id)
        return message.model_dump(mode="json") if message else None

    async def publish(self, *messages: Contract) -> None:
        self.published.extend(messages)


def make_request(text: str = "What is 17*23?", *, tools: Sequence[ToolSpec] = (), run_id: str = "run-1",
                 message_id: str | None = None, reply_to: str | None = "gateway.replies.test",
                 **options: Any) -> AgentRunRequested:
    return AgentRunRequested.create(
        correlation_id=run_id,
        message_id=message_id,
        run_id=run_id,
        messages=[ChatMessage(role="user", content=text)],
        tools=list(tools),
        options=RunOptions(**options),
        principal=Principal(subject="tester", role="user"),
        reply_to=reply_to,
    )


@pytest.fixture
def metrics() -> RunnerMetrics:
    return RunnerMetrics(CollectorRegistry())


@pytest.fixture
def sink() -> FakeSink:
    return FakeSink()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def fakes():
    """The fake classes and the request builder, for tests that build several."""

    class Fakes:
        Engine = FakeEngine
        Sink = FakeSink
        Store = FakeStore
        request = staticmethod(make_request)

    return Fakes


class ClosableEngine(FakeEngine):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed = False

    async def generate(self, prompt: str, **kwargs: Any) -> AsyncIterator:
        assert not self.closed, f"{self.model_version} used after close"
        async for chunk in super().generate(prompt, **kwargs):
            yield chunk

    async def close(self) -> None:
        self.closed = True


class FakeLoader:
    """Loads take as long as the test says: `release(version)` lets the load of that version end;
    `fail` makes a version's load raise; `broken_warmup` gives an engine whose generation fails."""

    reloads = True

    def __init__(self, *, gated: bool = False, fail: set[str] = frozenset(), broken_warmup: set[str] = frozenset()):
        self.gated = gated
        self.fail = set(fail)
        self.broken_warmup = set(broken_warmup)
        self.started: list[str] = []
        self.engines: dict[str, ClosableEngine] = {}
        self._gates: dict[str, asyncio.Event] = {}

    def release(self, version: str) -> None:
        self._gates.setdefault(version, asyncio.Event()).set()

    async def load(self, model: DesiredModel) -> ClosableEngine:
        self.started.append(model.model_version)
        if self.gated:
            await self._gates.setdefault(model.model_version, asyncio.Event()).wait()
        if model.model_version in self.fail:
            raise ModelLoadError(f"{model.gguf_uri}: sha256 mismatch")
        error = RuntimeError("warm-up crashed") if model.model_version in self.broken_warmup else None
        engine = ClosableEngine([f"answer from {model.model_version}"], model_version=model.model_version, error=error)
        self.engines[model.model_version] = engine
        return engine


async def until(predicate, timeout: float = 3.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)
