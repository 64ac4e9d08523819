"""Conversations across runs: a client that runs its own tool loop (the OpenAI-compatible gateway's
completions are one model turn each) sends call, then tool result, then the next turn, each a run.
A run continues an earlier one when the client tagged both with the same `session_id` (metadata, or
the gateway's `X-Session-Id` header): the latest earlier run of that session and subject; without a
tag, when the earlier run's whole transcript is a prefix of its messages.

Messages are compared by what the model saw, not by ids: role, text and each call's name and
arguments (canonical JSON). Tool call ids may differ between the two (the gateway gives the client
ids unique across the conversation), and an assistant turn's empty content may come back as
null or "". No I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from contracts import ChatMessage


def _seen(m: ChatMessage) -> list:
    calls = [[c.name, json.dumps(c.arguments, sort_keys=True, ensure_ascii=False)] for c in m.tool_calls or []]
    return [m.role, (m.content or "").strip(), calls]


def transcript_key(messages: Sequence[ChatMessage]) -> str:
    """The key of a transcript: equal for two transcripts the model saw alike."""
    doc = json.dumps([_seen(m) for m in messages], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(doc.encode()).hexdigest()[:32]


def prefix_keys(messages: Sequence[ChatMessage]) -> list[str]:
    """The keys of the earlier transcripts this one may continue, longest first: every proper
    prefix that ends with an assistant turn (a run ends on the model's turn)."""
    return [transcript_key(messages[:k]) for k in range(len(messages) - 1, 0, -1) if messages[k - 1].role == "assistant"]
