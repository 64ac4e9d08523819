"""GroupThink: N sampled answers of one model turn, and the majority vote between them.

Each sample is parsed (`modelkit.chat_format.parse_output`) and reduced to a *candidate*:

- a turn with tool calls is the multiset of its calls, order-insensitive (parallel calls in any
  order are the same answer; calling a tool twice is not the same as calling it once). A call is
  its name and its arguments with keys sorted, strings stripped and numbers normalised so that
  `2 == 2.0` (booleans stay booleans: `True` is not `1`). List order inside arguments counts.
  A block that did not parse is kept by its stripped raw text, so broken calls only agree with
  the same broken call;
- a turn without calls is the one "no call" candidate: every text answer votes for *answering
  in text*, whatever its wording. Wordings rarely agree token for token, and the decision the
  vote is for is "call this, or call nothing".

The candidate with the most samples wins. A tie goes to the candidate whose best sample has the
higher mean token log-probability (engines that report none rank below those that do; last
resort: the earliest sample). The turn's answer is the winner's best sample, verbatim, and the
agreement is the winner's count over N.

`vote` and the normalisation are pure; `draw` gets the N samples from an engine.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contracts import GroupThinkOptions, TrajectoryStep
from modelkit.chat_format import ParsedCall, parse_output

from .domain import TooManySamplesError
from .ports import Chunk, Engine, Sample

if TYPE_CHECKING:
    from modelkit.tool_grammar import ToolConstraint

NO_CALL: tuple[str] = ("no_call",)


@dataclass(frozen=True)
class Vote:
    winner: Sample
    index: int  # the winner's position among the samples
    agreement: float  # samples that gave the winning candidate / all samples
    votes: int
    candidates: int  # distinct candidates among the samples


def normalize_value(value: Any) -> Any:
    """Arguments as compared by the vote: sorted keys, stripped strings, 2.0 -> 2."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, Mapping):
        return {str(k).strip(): normalize_value(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]).strip())}
    if isinstance(value, (list, tuple)):
        return [normalize_value(v) for v in value]
    return value


def call_key(call: ParsedCall) -> str:
    if call.error is not None or call.name is None or call.arguments is None:
        return json.dumps({"invalid": call.raw.strip()})
    doc = {"name": call.name.strip(), "arguments": normalize_value(call.arguments)}
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def candidate_of(output: str) -> Hashable:
    """The answer a sample stands for (see the module docstring)."""
    calls = parse_output(output).calls
    if not calls:
        return NO_CALL
    return ("calls", tuple(sorted(call_key(c) for c in calls)))


def vote(samples: Sequence[Sample]) -> Vote:
    """The majority among `samples` (at least one)."""
    if not samples:
        raise ValueError("a vote needs at least one sample")
    groups: dict[Hashable, list[int]] = {}
    for i, sample in enumerate(samples):
        groups.setdefault(candidate_of(sample.text), []).append(i)

    def best(members: list[int]) -> int:
        return max(members, key=lambda i: (_logprob(samples[i]), -i))

    def rank(members: list[int]) -> tuple[int, float, int]:
        top = best(members)
        return len(members), _logprob(samples[top]), -members[0]

    winning = max(groups.values(), key=rank)
    index = best(winning)
    return Vote(samples[index], index, len(winning) / len(samples), len(winning), len(groups))


def _logprob(sample: Sample) -> float:
    lp = sample.mean_logprob
    return -math.inf if lp is None or math.isnan(lp) else lp


async def draw(engine: Engine, prompt: str, *, n: int, max_tokens: int, temperature: float,
               stop: Sequence[str], constraint: ToolConstraint | None = None) -> list[Sample]:
    """N samples of one turn: batched where the engine samples (`SamplingEngine.sample`),
    else N generations in a row at `temperature` (ollama, openai, scripted). A `constraint`
    goes to the engine as it goes to greedy decoding."""
    extra: dict[str, Any] = {"constraint": constraint} if constraint is not None else {}
    sample = getattr(engine, "sample", None)
    if sample is not None:
        return await sample(prompt, n=n, max_tokens=max_tokens, temperature=temperature, stop=stop, **extra)
    samples = []
    for _ in range(n):
        parts: list[str] = []
        last = Chunk("")
        chunks = 0
        generation = engine.generate(prompt, max_tokens=max_tokens, temperature=temperature, stop=stop, **extra)
        async with contextlib.aclosing(generation):
            async for chunk in generation:
                parts.append(chunk.text)
                chunks += 1
                if chunk.finish_reason is not None:
                    last = chunk
        tokens = last.completion_tokens if last.completion_tokens is not None else chunks
        samples.append(Sample("".join(parts), tokens, None, last.finish_reason or "stop", last.prompt_tokens or 0,
                              constrained=last.constrained, unconstrained_tools=tuple(last.unconstrained_tools)))
    return samples


def check_samples(options: GroupThinkOptions | None, max_samples: int) -> None:
    """Raises TooManySamplesError when a run asks for more samples per turn than the runner allows."""
    if options is not None and options.samples > max_samples:
        raise TooManySamplesError(
            f"groupthink.samples={options.samples} exceeds this runner's maximum of {max_samples} "
            "(RUNNER__GROUPTHINK_MAX_SAMPLES)")


def confidence(steps: Sequence[TrajectoryStep]) -> float | None:
    """A run's confidence: the lowest agreement of its GroupThink model turns (None without any)."""
    agreements = [s.decoding.agreement for s in steps
                  if s.kind == "model" and s.decoding is not None and s.decoding.agreement is not None]
    return min(agreements) if agreements else None
