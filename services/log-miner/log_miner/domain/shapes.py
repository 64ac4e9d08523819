"""What an example teaches, by the shape of its answer, and how many copies of it train.

| shape | the example |
|---|---|
| `parallel` | some assistant turn makes 2+ calls |
| `no_call` | tools are offered and no assistant turn calls one: the right answer is text |
| `multi_turn` | 2+ assistant turns (calls, their results, then more: the runner's server-side loop) |
| `single_call` | one assistant turn with one call |
| `text` | no tools offered: plain chat |

The first row that applies wins: a parallel turn is the rarest skill, so it names the example
whatever else it holds. `corrected` is not a shape but a flag (`meta.kind == "corrected"`: a
feedback correction); its weight multiplies the shape's.

Defaults: a model trained on mostly-call data learns to call where no tool fits (the demo's
irrelevance fell from 4/4 to 0/4 after one loop) and almost never writes a second call in a
turn, so `no_call` and `parallel` examples are repeated twice; everything else once. An
operator's `DatasetOptions.shape_weights` override them key by key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, get_args

from contracts.learning import ExampleShape, ShapeWeightKey

NO_CALL, PARALLEL, MULTI_TURN, SINGLE_CALL, TEXT = SHAPES = get_args(ExampleShape)  # the contract's names
CORRECTED = "corrected"
WEIGHT_KEYS: tuple[str, ...] = get_args(ShapeWeightKey)

DEFAULT_SHAPE_WEIGHTS: dict[str, float] = {
    NO_CALL: 2.0, PARALLEL: 2.0, MULTI_TURN: 1.0, SINGLE_CALL: 1.0, TEXT: 1.0, CORRECTED: 1.0,
}


def shape_of(messages: Sequence[Mapping[str, Any]], tools: Sequence[Any]) -> str:
    answers = [m for m in messages if m.get("role") == "assistant"]
    calls = [len(m.get("tool_calls") or []) for m in answers]
    if any(n >= 2 for n in calls):
        return PARALLEL
    if not any(calls):
        return NO_CALL if tools else TEXT
    return MULTI_TURN if len(answers) > 1 else SINGLE_CALL


def shape_weights(given: Mapping[str, float]) -> dict[str, float]:
    """The defaults with the operator's keys in their place (`DatasetOptions` has checked the
    keys and that no weight is negative)."""
    return {**DEFAULT_SHAPE_WEIGHTS, **{k: float(w) for k, w in given.items()}}


def weight_of_shape(shape: str, corrected: bool, weights: Mapping[str, float]) -> float:
    return weights.get(shape, 1.0) * (weights.get(CORRECTED, 1.0) if corrected else 1.0)
