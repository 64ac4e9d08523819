"""Engine: scripted replies, no model. For benchmarks of the runner's own overhead (and demos).

`ENGINE__SCRIPT` is the reply, streamed word by word and parsed like any model output (so it
may contain tool calls). A JSON list of strings scripts successive model turns of a run: the
n-th model turn of the conversation gets the n-th reply (the last one repeats).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Sequence

from modelkit.chat_format import START
from modelkit.tool_grammar import ToolConstraint

from ..ports import Chunk

_MODEL_TURN = f"{START}model\n"


class ScriptedEngine:
    name = "scripted"

    def __init__(self, script: str, *, model_version: str = "scripted") -> None:
        self.model_version = model_version
        replies = _as_list(script)
        self._turns = [re.findall(r"\s*\S+", reply) or [reply] for reply in replies]

    async def generate(self, prompt: str, *, max_tokens: int, temperature: float,
                       stop: Sequence[str], constraint: ToolConstraint | None = None) -> AsyncIterator[Chunk]:
        # The script is what it is: a constraint is not applied (the last chunk says so).
        turn = prompt.count(_MODEL_TURN) - 1  # model turns already in the conversation
        script = self._turns[min(max(turn, 0), len(self._turns) - 1)]
        pieces = script[:max_tokens]
        for piece in pieces[:-1]:
            yield Chunk(piece)
        yield Chunk(
            pieces[-1] if pieces else "",
            prompt_tokens=len(prompt.split()),  # words, not tokens: there is no tokenizer here
            completion_tokens=len(pieces),
            finish_reason="length" if len(pieces) < len(script) else "stop",
        )

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _as_list(script: str) -> list[str]:
    if script.lstrip().startswith("["):
        try:
            replies = json.loads(script)
        except json.JSONDecodeError:
            return [script]
        if isinstance(replies, list) and replies and all(isinstance(r, str) for r in replies):
            return replies
    return [script]
