"""SFT examples: the one unified format, and how a logged run (plus feedback) becomes one.

A line of train.jsonl / val.jsonl:

    {"messages": [{"role": "system"|"user", "content": str},
                  {"role": "assistant", "content": str|null,
                   "tool_calls": [{"id": str, "name": str, "arguments": {...}}]},   # calls optional
                  {"role": "tool", "tool_call_id": str, "name": str, "content": str}, ...],
     "tools": [{"type": "function", "function": {"name", "description", "parameters"}}],
     "meta": {"source": "mined" | "<format>:<location>", "kind": "success" | "corrected" | <format>,
              "shape": "no_call" | "parallel" | "multi_turn" | "single_call" | "text" (see shapes.py),
              "run_ids": [...], "feedback_ids": [...], "origin": str | null, "hints": [str] (optional)}}

The trainer reads `messages` and `tools` (rendered by `modelkit.chat_format.render_segments`)
and ignores `meta`, which carries lineage.

Which runs teach something (`mine_run`):
- corrected: feedback with a corrected call or answer, or with `corrected_tool_calls: []`
  (no call was right). The correction replaces the model's output (see `corrected_messages`);
  the latest correction wins.
- success: primary label `valid_call` / `direct_answer`, outcome `answered` or
  `client_tool_call`, no -1 rating; with `include_unrated=False` only runs rated +1 count.
Everything else yields nothing.

A conversation a client carried over several runs (its own tool loop: call, result, next turn)
is mined once, from its last run, whose messages hold the whole conversation; its `run_ids` name
every run of it, oldest first (`RunWithFeedback.earlier_runs`, see conversations.py).

Where the run's own output starts: after the last `user` message. What comes before is the
request (system prompt, history) and is kept as is. A request that ends in tool results (a
client continuing after its own tool ran) has its earlier assistant turn treated as output too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contracts import ChatMessage, ToolCall
from modelkit.chat_format import TOOL_CALL_OPEN

from .records import Feedback, Run, RunWithFeedback
from .shapes import shape_of
from .taxonomy import FINISHED_OUTCOMES, SUCCESS, Classification, classify

Message = dict[str, Any]

MINED = "mined"
KIND_SUCCESS = "success"
KIND_CORRECTED = "corrected"


@dataclass(frozen=True)
class Example:
    messages: list[Message]
    tools: list[dict[str, Any]]
    source: str  # the DatasetOptions.sources entry it came from ("mined", "bfcl:/x.jsonl", ...)
    kind: str  # success | corrected | the corpus format
    run_ids: tuple[str, ...] = ()
    feedback_ids: tuple[str, ...] = ()
    origin: str | None = None  # corpus item id or line number
    hints: tuple[str, ...] = ()
    model_versions: tuple[str, ...] = ()

    @property
    def shape(self) -> str:
        return shape_of(self.messages, self.tools)

    def line(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "source": self.source,
            "kind": self.kind,
            "shape": self.shape,
            "run_ids": list(self.run_ids),
            "feedback_ids": list(self.feedback_ids),
            "origin": self.origin,
        }
        if self.hints:
            meta["hints"] = list(self.hints)
        return {"messages": self.messages, "tools": self.tools, "meta": meta}


# --------------------------------------------------------------------------- message shapes


def call_dict(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "name": call.name, "arguments": dict(call.arguments)}


def assistant(content: str | None = None, calls: Sequence[dict[str, Any]] | None = None) -> Message:
    msg: Message = {"role": "assistant", "content": content if content else None}
    if calls:
        msg["tool_calls"] = [dict(c) for c in calls]
    return msg


def message_dict(msg: ChatMessage) -> Message:
    """ChatMessage → unified dict (assistant turns always carry `content`, possibly null)."""
    if msg.role == "assistant":
        return assistant(msg.content, [call_dict(c) for c in msg.tool_calls or []])
    out: Message = {"role": msg.role, "content": msg.content if msg.content is not None else ""}
    if msg.role == "tool":
        out["tool_call_id"] = msg.tool_call_id or ""
        out["name"] = msg.name or "tool"
    return out


def tool_dicts(run: Run) -> list[dict[str, Any]]:
    return [t.model_dump(mode="json") for t in run.tools]


def no_call_answer(tool_names: Sequence[str]) -> str:
    """The plain answer where no offered tool fits: a short refusal that says why (the tools
    on offer do other things), so the model learns to read the tools before it calls one."""
    names = list(dict.fromkeys(tool_names))
    if not names:
        return "I can't do that with a tool: none is available."
    if len(names) == 1:
        return f"I can't do that with a tool: the only one available, {names[0]}, does not fit this request."
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"I can't do that with a tool: none of the available ones ({shown}) fits this request."


# --------------------------------------------------------------------------- trajectories


def output_start(messages: Sequence[ChatMessage]) -> int:
    """Index of the first message the run produced: right after the last user message."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user":
            return i + 1
    return 0


def invalid_call_ids(run: Run) -> set[str]:
    return {s.tool_call.id for s in run.steps if s.kind == "tool_call" and not s.valid and s.tool_call is not None}


def clean_output(run: Run, output: Sequence[ChatMessage]) -> list[Message]:
    """The run's output without invalid turns.

    An invalid turn is an assistant turn holding a call the runner rejected (unknown tool,
    schema violation: its id is in an invalid `tool_call` step) or a malformed block it could
    not parse (left in the content as `<tool_call>...`). Such a turn goes whole, with every
    tool message answering it (the error results the model was shown)."""
    bad_ids = invalid_call_ids(run)
    kept: list[Message] = []
    kept_ids: set[str] = set()
    for msg in output:
        if msg.role == "assistant":
            ids = {c.id for c in msg.tool_calls or []}
            if ids & bad_ids or TOOL_CALL_OPEN in (msg.content or ""):
                continue
            kept_ids |= ids
            kept.append(message_dict(msg))
        elif msg.role == "tool":
            if msg.tool_call_id in kept_ids:
                kept.append(message_dict(msg))
        else:
            kept.append(message_dict(msg))
    return kept


def _strip_final_output(output: list[Message]) -> list[Message]:
    """Drop the model's last word: a trailing answer, or trailing calls nobody answered."""
    out = list(output)
    while out and out[-1]["role"] == "assistant":
        out.pop()
    return out


def _results_by_call(run: Run, output: Sequence[Message]) -> dict[tuple[str, str], Message]:
    """Successful tool results of the model's valid calls, keyed by (name, canonical arguments)."""
    calls: dict[str, tuple[str, str]] = {}
    for msg in output:
        for c in msg.get("tool_calls") or []:
            calls[c["id"]] = (c["name"], json.dumps(c["arguments"], sort_keys=True))
    failed = {s.tool_call.id for s in run.steps if s.kind == "tool_result" and not s.valid and s.tool_call}
    found: dict[tuple[str, str], Message] = {}
    for msg in output:
        cid = msg.get("tool_call_id")
        if msg["role"] == "tool" and cid in calls and cid not in failed:
            found.setdefault(calls[cid], msg)
    return found


def corrected_messages(run: Run, fb: Feedback) -> list[Message]:
    """The conversation with the feedback's correction in place of the model's output.

    - corrected calls: the request, then one assistant turn with the corrected calls (they
      replace whatever the model did first). When an answer is corrected too and every
      corrected call matches a call the model made that ran successfully (same name and
      arguments), the results and the corrected answer follow; otherwise the example ends at
      the calls (results for calls that never ran would be invented).
    - no call (`corrected_tool_calls: []`): the request, then one plain-text turn, the corrected
      answer or else `no_call_answer` naming the offered tools; whatever the model called goes.
      The tools stay offered: the example teaches answering in text where they do not fit.
    - corrected answer only: the model's valid work (calls and their results, invalid turns
      dropped) stays, its final answer is replaced by the corrected one.
    """
    start = output_start(run.messages)
    prefix = [message_dict(m) for m in run.messages[:start]]
    output = clean_output(run, run.messages[start:])
    answer = (fb.corrected_answer or "").strip() or None
    if fb.says_no_call:
        if answer is None and run.tools:
            answer = no_call_answer([t.function.name for t in run.tools])
        return [*prefix, assistant(answer)]
    if fb.corrected_tool_calls:
        calls = _with_ids(fb.corrected_tool_calls)
        messages = [*prefix, assistant(None, calls)]
        if answer:
            results = _results_by_call(run, output)
            matched = [results.get((c["name"], json.dumps(c["arguments"], sort_keys=True))) for c in calls]
            if all(matched):
                for call, result in zip(calls, matched, strict=True):
                    messages.append({**result, "tool_call_id": call["id"]})
                messages.append(assistant(answer))
        return messages
    return [*prefix, *_strip_final_output(output), assistant(answer)]


def _with_ids(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    """Corrected calls keep their ids unless missing or repeated."""
    out, seen = [], set()
    for n, call in enumerate(calls, start=1):
        cid = call.id if call.id and call.id not in seen else f"call_fix_{n}"
        seen.add(cid)
        out.append({"id": cid, "name": call.name, "arguments": dict(call.arguments)})
    return out


def latest_correction(feedback: Sequence[Feedback]) -> Feedback | None:
    corrections = [f for f in feedback if f.is_correction]
    return corrections[-1] if corrections else None


def example_kind(run: Run, feedback: Sequence[Feedback], classification: Classification, *,
                 include_unrated: bool) -> str | None:
    """Whether (and how) the run yields a training example; None when it teaches nothing."""
    if latest_correction(feedback) is not None:
        return KIND_CORRECTED
    if classification.label not in SUCCESS or run.outcome not in FINISHED_OUTCOMES:
        return None
    ratings = [f.rating for f in feedback]
    if any(r < 0 for r in ratings):
        return None
    if not include_unrated and not any(r > 0 for r in ratings):
        return None
    return KIND_SUCCESS


@dataclass(frozen=True)
class MiningRules:
    include_unrated: bool = True


@dataclass(frozen=True)
class Mined:
    example: Example | None
    classification: Classification
    kind: str | None = None


def mine_run(item: RunWithFeedback, rules: MiningRules, source: str = MINED) -> Mined:
    run, feedback = item.run, item.feedback
    classification = classify(run, feedback)
    kind = example_kind(run, feedback, classification, include_unrated=rules.include_unrated)
    if kind is None:
        return Mined(None, classification)
    if kind == KIND_CORRECTED:
        fb = latest_correction(feedback)
        assert fb is not None
        messages = corrected_messages(run, fb)
        feedback_ids = tuple(f.feedback_id for f in feedback)
    else:
        start = output_start(run.messages)
        messages = [message_dict(m) for m in run.messages[:start]] + clean_output(run, run.messages[start:])
        feedback_ids = tuple(f.feedback_id for f in feedback)
    example = Example(
        messages=messages, tools=tool_dicts(run), source=source, kind=kind,
        run_ids=(*item.earlier_runs, run.run_id),
        feedback_ids=feedback_ids, origin=run.run_id, model_versions=(run.model_version,),
    )
    return Mined(example, classification, kind)
