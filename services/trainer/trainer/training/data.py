"""Training data: JSONL conversations → token ids with loss labels → packed rows → step batches.

Format of a line (what the log miner writes as train.jsonl / val.jsonl):

    {"messages": [{"role": "user", "content": "..."},
                  {"role": "assistant", "content": null, "tool_calls": [...]},
                  {"role": "tool", "name": "...", "content": "..."}, ...],
     "tools": [{"type": "function", "function": {"name": ..., "parameters": {...}}}]}

Text comes from `modelkit.chat_format.render_segments`, the same function that builds serving
prompts, so training and serving see identical bytes. Each segment is tokenised on its own and
labelled when the segment is trainable (the model's turns, `<end_of_turn>` included); user, system
and tool-result text gets -100. Segment boundaries sit at special tokens or right after
`<start_of_turn>model\\n`, which is exactly where serving's prompt ends and generation starts.

Packing. Examples are placed, in shuffled order, into rows of at most `max_seq_len` tokens by
first fit (an example goes into the first row with room; examples are never split). Every example
keeps its own `position_ids` starting at 0. With `attention_mask=None`, transformers derives a
block-diagonal causal mask from the position resets (`masking_utils.find_packed_sequence_indices`),
so tokens attend only within their own example: packing removes padding waste without
cross-example contamination, and the sliding-window layers see per-example positions. The label of
an example's first token is always -100 (BOS), so no loss term spans two examples either.

Decisions. In a model turn with calls, the token right after each `</tool_call` decides whether the
turn goes on with another call (`><`) or ends (`>` then `<end_of_turn>`): the whole difference
between one call and parallel calls. Their positions are kept (`TokenizedExample.decisions`), so the
loss can weigh them (`LoraOptions.decision_weight`, loss.collate). They are found by the
tokenizer's character offsets; a tokenizer without offsets yields none.

Order. Rows are built once from a seeded shuffle; each epoch visits the rows in its own seeded
order. A training step is `gradient_accumulation` micro-batches of `batch_size` rows, and the
whole schedule is a pure function of (data, options): resuming at step k only needs k.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from modelkit.chat_format import TOOL_CALL_CLOSE, render_segments

IGNORE = -100


class TextTokenizer(Protocol):
    """The part of a Hugging Face tokenizer the data pipeline uses."""

    bos_token_id: int | None
    pad_token_id: int | None

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]  # aligned with input_ids (label of token i is input_ids[i] or IGNORE)
    truncated: bool = False
    decisions: tuple[int, ...] = ()  # indices of the tokens that end or continue a turn's calls

    @property
    def trainable_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


@dataclass(frozen=True)
class PackedRow:
    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    n_examples: int
    decisions: tuple[int, ...] = ()  # indices into the row (see TokenizedExample.decisions)

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class DatasetStats:
    examples: int
    truncated: int
    dropped: int  # no trainable token left after truncation (or none to begin with)
    rows: int
    tokens: int  # real (non-padding) tokens in all rows
    trainable_tokens: int
    decisions: int = 0  # call-ending/continuing tokens found (TokenizedExample.decisions)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    records = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
                raise ValueError(f"{path}:{n}: expected an object with a 'messages' list")
            records.append(record)
    return records


def tokenize_example(
    messages: Sequence[dict[str, Any]],
    tools: Sequence[dict[str, Any]],
    tokenizer: TextTokenizer,
    max_seq_len: int,
) -> TokenizedExample:
    """BOS + the rendered conversation, labels on trainable segments, cut to `max_seq_len`."""
    ids: list[int] = []
    labels: list[int] = []
    if tokenizer.bos_token_id is not None:
        ids.append(tokenizer.bos_token_id)
        labels.append(IGNORE)
    decisions: list[int] = []
    for segment in render_segments(messages, tools):
        piece = tokenizer.encode(segment.text, add_special_tokens=False)
        if segment.trainable and TOOL_CALL_CLOSE in segment.text:
            decisions += [len(ids) + i for i in decision_tokens(tokenizer, segment.text, piece)]
        ids.extend(piece)
        labels.extend(piece if segment.trainable else [IGNORE] * len(piece))
    truncated = len(ids) > max_seq_len
    return TokenizedExample(ids[:max_seq_len], labels[:max_seq_len], truncated,
                            tuple(i for i in decisions if i < max_seq_len))


def decision_tokens(tokenizer: Any, text: str, piece: Sequence[int]) -> list[int]:
    """Indices into `piece` (the tokens of `text`) of the tokens holding the closing `>` of each
    `</tool_call>`: where the model decides between another call and the end of its turn. Found
    by the tokenizer's character offsets (Hugging Face fast tokenizers); [] without them, or when
    the offsets come with other tokens than `piece`."""
    ends = []
    at = text.find(TOOL_CALL_CLOSE)
    while at >= 0:
        ends.append(at + len(TOOL_CALL_CLOSE) - 1)
        at = text.find(TOOL_CALL_CLOSE, at + 1)
    try:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        same = list(encoded["input_ids"]) == list(piece)
    except (TypeError, KeyError, NotImplementedError, ValueError):
        return []
    if not same:
        return []
    return [i for i, (start, end) in enumerate(offsets) if any(start <= c < end for c in ends)]


def tokenize_records(
    records: Iterable[dict[str, Any]], tokenizer: TextTokenizer, max_seq_len: int
) -> tuple[list[TokenizedExample], int, int]:
    """Tokenised examples that have something to learn, plus (truncated, dropped) counts."""
    kept: list[TokenizedExample] = []
    truncated = dropped = 0
    for record in records:
        example = tokenize_example(
            record["messages"], record.get("tools") or [], tokenizer, max_seq_len
        )
        truncated += example.truncated
        if example.trainable_tokens == 0:
            dropped += 1
            continue
        kept.append(example)
    return kept, truncated, dropped


def pack(examples: Sequence[TokenizedExample], max_seq_len: int) -> list[PackedRow]:
    """First-fit packing into rows of at most `max_seq_len` tokens, positions reset per example."""
    rows: list[tuple[list[int], list[int], list[int], list[int], list[int]]] = []  # ids, labels, pos, [count], decisions
    free: list[int] = []
    for ex in examples:
        n = len(ex.input_ids)
        if n > max_seq_len:
            raise ValueError(
                f"example of {n} tokens exceeds max_seq_len {max_seq_len}; truncate first"
            )
        slot = next((i for i, room in enumerate(free) if room >= n), None)
        if slot is None:
            rows.append(([], [], [], [0], []))
            free.append(max_seq_len)
            slot = len(rows) - 1
        ids, labels, pos, count, decisions = rows[slot]
        decisions.extend(len(ids) + i for i in ex.decisions)
        ids.extend(ex.input_ids)
        labels.extend(ex.labels)
        pos.extend(range(n))
        count[0] += 1
        free[slot] -= n
    return [PackedRow(ids, labels, pos, count[0], tuple(decisions)) for ids, labels, pos, count, decisions in rows]


def fingerprint(rows: Sequence[PackedRow]) -> str:
    """Identifies the packed dataset, so a resume can refuse a different one."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps([row.input_ids, row.labels]).encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Schedule:
    """Which rows each optimizer step trains on. Pure arithmetic over (n_rows, options)."""

    n_rows: int
    batch_size: int
    gradient_accumulation: int
    seed: int

    @property
    def micro_batches_per_epoch(self) -> int:
        return math.ceil(self.n_rows / self.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.micro_batches_per_epoch / self.gradient_accumulation)

    def total_steps(self, epochs: float, max_steps: int | None) -> int:
        if max_steps is not None:
            return max_steps
        return max(1, math.ceil(epochs * self.steps_per_epoch))

    def epoch_order(self, epoch: int) -> list[int]:
        order = list(range(self.n_rows))
        random.Random(f"{self.seed}:epoch:{epoch}").shuffle(order)
        return order

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, micro-batch index within the epoch) where step `step` (0-based) begins."""
        per_epoch = self.steps_per_epoch
        return step // per_epoch, (step % per_epoch) * self.gradient_accumulation

    def step_batches(self, step: int) -> list[list[int]]:
        """Row indices of each micro-batch of step `step` (0-based); an epoch's last step may
        have fewer micro-batches, its last micro-batch fewer rows."""
        epoch, first = self.position(step)
        order = self.epoch_order(epoch)
        last = min(first + self.gradient_accumulation, self.micro_batches_per_epoch)
        return [order[m * self.batch_size : (m + 1) * self.batch_size] for m in range(first, last)]

    def steps(self, start: int, total: int) -> Iterator[tuple[int, list[list[int]]]]:
        for step in range(start, total):
            yield step, self.step_batches(step)


def shuffled(records: Sequence[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    out = list(records)
    random.Random(f"{seed}:examples").shuffle(out)
    return out


def one_per_row(examples: Sequence[TokenizedExample]) -> list[PackedRow]:
    return [PackedRow(e.input_ids, e.labels, list(range(len(e.input_ids))), 1, e.decisions) for e in examples]


def build_rows(
    records: Sequence[dict[str, Any]],
    tokenizer: TextTokenizer,
    max_seq_len: int,
    seed: int | None,
    packing: bool = True,
) -> tuple[list[PackedRow], DatasetStats]:
    """Tokenise, (optionally) shuffle, and pack; `seed=None` keeps file order (evaluation)."""
    ordered = shuffled(records, seed) if seed is not None else list(records)
    examples, truncated, dropped = tokenize_records(ordered, tokenizer, max_seq_len)
    rows = pack(examples, max_seq_len) if packing else one_per_row(examples)
    stats = DatasetStats(
        examples=len(examples),
        truncated=truncated,
        dropped=dropped,
        rows=len(rows),
        tokens=sum(len(r) for r in rows),
        trainable_tokens=sum(e.trainable_tokens for e in examples),
        decisions=sum(len(e.decisions) for e in examples),
    )
    return rows, stats
