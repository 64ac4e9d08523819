"""The runner's ports. Adapters implement them; the use cases and the tests see only these."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from contracts import AgentRunStep, Contract, ToolSpec
from modelkit.tool_grammar import ToolConstraint
from modelregistry import Canary

if TYPE_CHECKING:
    from .model_slot import DesiredModel


@dataclass(frozen=True)
class Chunk:
    """A piece of generated text. The last chunk of a generation carries the counts."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None  # "stop" (end of turn) or "length" (max_tokens)
    constrained: bool = False  # last chunk: the turn was decoded under the tools' grammar
    unconstrained_tools: tuple[str, ...] = ()  # last chunk: tools whose schema the grammar left free


@dataclass(frozen=True)
class Sample:
    """One sampled answer of a GroupThink turn (the whole text, not streamed)."""

    text: str
    completion_tokens: int
    mean_logprob: float | None  # mean log-probability of the chosen tokens; None if the engine has none
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    constrained: bool = False  # decoded under the tools' grammar
    unconstrained_tools: tuple[str, ...] = ()  # tools whose schema the grammar left free


class Engine(Protocol):
    """An LLM that continues a rendered prompt (our own Gemma turn format, never the server's)."""

    name: str  # engine kind: llamacpp, ollama, openai, scripted
    model_version: str

    def generate(
        self, prompt: str, *, max_tokens: int, temperature: float, stop: Sequence[str],
        constraint: ToolConstraint | None = None,
    ) -> AsyncIterator[Chunk]:
        """Stream the continuation. Stops at the end of the model turn, a stop string or max_tokens.

        With a `constraint`, an engine that can decodes under the tools' grammar (tool_choice
        included) and says so on the last chunk; one that cannot decodes freely."""
        ...

    async def ping(self) -> None:
        """Raise if the engine cannot serve (a remote server is down)."""
        ...

    async def close(self) -> None: ...


class SamplingEngine(Engine, Protocol):
    """An engine that samples N answers of one prompt together (GroupThink), e.g. as llama.cpp
    sequences sharing the prompt's KV cache. Engines without it are sampled N times in a row."""

    async def sample(self, prompt: str, *, n: int, max_tokens: int, temperature: float,
                     stop: Sequence[str], grammar: str | None = None,
                     constraint: ToolConstraint | None = None) -> list[Sample]:
        """N samples; under `constraint`, the same grammar `generate` decodes under."""
        ...


class EngineLoader(Protocol):
    """Makes an engine for a model version (fetch and verify its GGUF, load it; or point a
    server at it). `reloads` is False for engines that cannot switch models."""

    reloads: bool

    async def load(self, model: DesiredModel) -> Engine:
        """A ready engine for `model`; raises ModelLoadError with the cause."""
        ...


class ProductionModel(Protocol):
    """The registry's `production` version, read at start-up."""

    async def production(self) -> DesiredModel | None:
        """None when the registry has no production version; raises RegistryUnavailableError."""
        ...


class ModelLookup(Protocol):
    """Any alias or version of the registry, looked up when a run asks for it (`options.model`)."""

    async def lookup(self, name: str) -> DesiredModel | None:
        """None when the registry knows no such alias or version; raises RegistryUnavailableError."""
        ...


class CanarySource(Protocol):
    """The registry's running canary (decision 0020)."""

    async def canary(self) -> Canary | None:
        """None when no canary runs; raises RegistryUnavailableError."""
        ...


class Tool(Protocol):
    """A server-side tool, registered by entry point in group `agentloop.tools`."""

    name: str
    spec: ToolSpec

    async def run(self, arguments: dict[str, Any]) -> Any:
        """Run with schema-valid arguments; return a JSON-able result. Raise ToolError on failure."""
        ...


class StepSink(Protocol):
    """Where a run's live steps go (the requesting gateway's reply queue). Best effort."""

    async def step(self, step: AgentRunStep) -> None: ...

    async def final(self, message: Contract) -> None: ...


@dataclass(frozen=True)
class RunRecord:
    """What is written about a finished run, in one transaction with the inbox claim."""

    message_id: str
    message_type: str
    row: dict[str, Any]  # the agent_runner.trajectories row
    outbox: Sequence[Contract]


class RunStore(Protocol):
    async def is_processed(self, message_id: str) -> bool: ...

    async def record(self, record: RunRecord) -> bool:
        """Claim the message, insert the trajectory, stage the outbox; False if already processed."""
        ...

    async def stored_outcome(self, run_id: str, message_id: str) -> dict[str, Any] | None:
        """The body of an already-recorded terminal message (to re-send to a reply queue)."""
        ...

    async def publish(self, *messages: Contract) -> None:
        """After commit: publish the staged outbox messages (the relay retries on failure)."""
        ...
