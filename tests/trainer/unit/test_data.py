"""Tokenisation with loss labels, truncation, packing and the step schedule."""

from __future__ import annotations

import re

import pytest
from modelkit.chat_format import END, START

from trainer.training.data import (
    IGNORE,
    PackedRow,
    Schedule,
    TokenizedExample,
    build_rows,
    pack,
    tokenize_example,
    tokenize_records,
)
from trainer.training.loss import collate

SPECIAL = {"<bos>": 2, START: 105, END: 106}


class CharTokenizer:
    """One id per character, Gemma's ids for the special tokens: enough to check labels by text."""

    bos_token_id = 2
    pad_token_id = 0

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [self.bos_token_id] if add_special_tokens else []
        for piece in re.split(f"({re.escape(START)}|{re.escape(END)})", text):
            ids.extend([SPECIAL[piece]] if piece in SPECIAL else [1000 + ord(c) for c in piece])
        return ids

    def decode(self, ids: list[int]) -> str:
        names = {v: k for k, v in SPECIAL.items()}
        return "".join(names.get(i) or chr(i - 1000) for i in ids)


TOK = CharTokenizer()
TOOLS = [{"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}}]
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 17*23?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "calculator", "arguments": '{"expression": "17*23"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "name": "calculator", "content": "391"},
    {"role": "assistant", "content": "17*23 is 391."},
]


def trained_spans(ex: TokenizedExample) -> list[str]:
    """The labelled text, one string per contiguous labelled run."""
    spans, current = [], []
    for tok, label in zip(ex.input_ids, ex.labels, strict=True):
        if label != IGNORE:
            assert label == tok  # labels are the tokens themselves (shifted in the loss)
            current.append(tok)
        elif current:
            spans.append(TOK.decode(current))
            current = []
    if current:
        spans.append(TOK.decode(current))
    return spans


def test_only_the_model_turns_are_trained_including_end_of_turn():
    ex = tokenize_example(CONVERSATION, TOOLS, TOK, max_seq_len=10_000)

    assert trained_spans(ex) == [
        '<tool_call>{"name": "calculator", "arguments": {"expression": "17*23"}}</tool_call>' + END,
        "17*23 is 391." + END,
    ]


def test_tool_results_user_and_system_text_are_not_trained():
    ex = tokenize_example(CONVERSATION, TOOLS, TOK, max_seq_len=10_000)
    trained = "".join(trained_spans(ex))
    untrained = TOK.decode(
        [t for t, lab in zip(ex.input_ids, ex.labels, strict=True) if lab == IGNORE]
    )

    assert '<tool_result name="calculator">391</tool_result>' in untrained
    assert "What is 17*23?" in untrained and "Be brief." in untrained
    assert "tool_result" not in trained and "What is" not in trained
    assert f"{START}model\n" in untrained  # the turn opener is prompt, as at serving time


def test_bos_comes_once_at_the_start_and_is_not_trained():
    ex = tokenize_example(CONVERSATION, TOOLS, TOK, max_seq_len=10_000)

    assert ex.input_ids[0] == TOK.bos_token_id and ex.labels[0] == IGNORE
    assert ex.input_ids.count(TOK.bos_token_id) == 1


def test_text_matches_the_serving_format_byte_for_byte():
    from modelkit.chat_format import render_prompt

    ex = tokenize_example(CONVERSATION[:2], TOOLS, TOK, max_seq_len=10_000)

    assert TOK.decode(ex.input_ids[1:]) + f"{START}model\n" == render_prompt(
        CONVERSATION[:2], TOOLS
    )


def test_truncation_cuts_to_max_seq_len_and_says_so():
    full = tokenize_example(CONVERSATION, TOOLS, TOK, max_seq_len=10_000)
    cut = tokenize_example(CONVERSATION, TOOLS, TOK, max_seq_len=len(full.input_ids) - 5)

    assert cut.truncated and not full.truncated
    assert cut.input_ids == full.input_ids[:-5] and cut.labels == full.labels[:-5]


def test_examples_left_without_a_trainable_token_are_dropped():
    full = tokenize_example(CONVERSATION, TOOLS, TOK, max_seq_len=10_000)
    first_label = next(i for i, lab in enumerate(full.labels) if lab != IGNORE)
    records = [
        {"messages": CONVERSATION, "tools": TOOLS},
        {"messages": CONVERSATION[:2], "tools": TOOLS},
    ]

    kept, truncated, dropped = tokenize_records(records, TOK, max_seq_len=first_label)

    assert kept == [] and truncated == 1 and dropped == 2  # cut before the answer; no answer at all


def ex(n: int, tag: int) -> TokenizedExample:
    return TokenizedExample([2] + [tag] * (n - 1), [IGNORE] + [tag] * (n - 1))


def test_packing_resets_positions_at_every_example_and_keeps_them_whole():
    rows = pack([ex(5, 11), ex(3, 12), ex(4, 13)], max_seq_len=8)

    assert [r.n_examples for r in rows] == [2, 1]
    assert rows[0].input_ids == [2, 11, 11, 11, 11, 2, 12, 12]
    assert rows[0].position_ids == [0, 1, 2, 3, 4, 0, 1, 2]
    assert rows[1].position_ids == [0, 1, 2, 3]


def test_packing_fills_earlier_rows_first_and_never_exceeds_the_limit():
    examples = [ex(n, 10 + i) for i, n in enumerate([6, 7, 2, 3, 1, 8])]
    rows = pack(examples, max_seq_len=8)

    assert all(len(r) <= 8 for r in rows)
    assert sorted(t for r in rows for t in r.input_ids if t != 2) == sorted(
        t for e in examples for t in e.input_ids if t != 2
    )
    assert [len(r) for r in rows] == [8, 8, 3, 8]  # 6+2, 7+1, 3, 8
    assert set(rows[0].input_ids) == {2, 10, 12}


def test_no_label_spans_two_packed_examples():
    row = pack([ex(4, 11), ex(4, 12)], max_seq_len=8)[0]

    # the label after the boundary (predicted from the last token before it) is BOS: ignored
    boundary = row.position_ids.index(0, 1)
    assert row.labels[boundary] == IGNORE


def test_packing_rejects_an_example_longer_than_a_row():
    with pytest.raises(ValueError, match="exceeds max_seq_len"):
        pack([ex(9, 11)], max_seq_len=8)


def test_collate_pads_with_ignored_labels_and_a_separate_position_run():
    rows = [
        PackedRow([2, 11, 11], [IGNORE, 11, 11], [0, 1, 2], 1),
        PackedRow([2, 12], [IGNORE, 12], [0, 1], 1),
    ]
    batch = collate(rows, pad_id=0)

    assert batch.input_ids.tolist() == [[2, 11, 11], [2, 12, 0]]
    assert batch.labels[1].tolist() == [IGNORE, 12, IGNORE]
    assert batch.position_ids[1].tolist() == [0, 1, 0]
    assert batch.tokens == 5 and batch.label_count == 3


def test_build_rows_is_deterministic_for_a_seed_and_reports_stats():
    records = [
        {"messages": CONVERSATION[:3] if i % 2 else CONVERSATION, "tools": TOOLS} for i in range(6)
    ]
    a, stats = build_rows(records, TOK, max_seq_len=2048, seed=3)
    b, _ = build_rows(records, TOK, max_seq_len=2048, seed=3)

    assert a == b
    assert stats.examples == 6 and stats.dropped == 0 and stats.rows == len(a)
    assert stats.tokens == sum(len(r) for r in a)


# ------------------------------------------------------------------ schedule


def test_every_row_is_visited_once_per_epoch_in_a_seeded_order():
    s = Schedule(n_rows=10, batch_size=3, gradient_accumulation=2, seed=7)

    assert s.micro_batches_per_epoch == 4 and s.steps_per_epoch == 2
    epoch0 = [i for step in range(2) for mb in s.step_batches(step) for i in mb]
    epoch1 = [i for step in range(2, 4) for mb in s.step_batches(step) for i in mb]
    assert sorted(epoch0) == sorted(epoch1) == list(range(10))
    assert epoch0 != epoch1
    assert Schedule(10, 3, 2, seed=7).step_batches(3) == s.step_batches(3)


def test_resuming_at_step_k_continues_with_exactly_the_batches_of_an_uninterrupted_run():
    s = Schedule(n_rows=23, batch_size=2, gradient_accumulation=3, seed=1)
    total = s.total_steps(epochs=3, max_steps=None)
    uninterrupted = list(s.steps(0, total))

    for k in range(total):
        assert list(Schedule(23, 2, 3, 1).steps(k, total)) == uninterrupted[k:]


def test_data_position_arithmetic():
    s = Schedule(n_rows=23, batch_size=2, gradient_accumulation=3, seed=1)

    assert s.micro_batches_per_epoch == 12 and s.steps_per_epoch == 4
    assert s.position(0) == (0, 0)
    assert s.position(3) == (0, 9)
    assert s.position(4) == (1, 0)
    assert s.position(9) == (2, 3)
    assert (
        len(s.step_batches(3)) == 3 and len(s.step_batches(3)[-1]) == 1
    )  # last micro-batch: 23rd row


def test_total_steps_from_epochs_or_max_steps():
    s = Schedule(n_rows=10, batch_size=2, gradient_accumulation=1, seed=0)

    assert s.total_steps(epochs=1.0, max_steps=None) == 5
    assert s.total_steps(epochs=1.5, max_steps=None) == 8
    assert s.total_steps(epochs=1.0, max_steps=12) == 12  # max_steps wins and keeps cycling epochs
    assert len(list(s.steps(0, 12))) == 12


def test_without_packing_every_example_gets_its_own_row():
    records = [{"messages": CONVERSATION, "tools": TOOLS}] * 3
    rows, stats = build_rows(records, TOK, max_seq_len=4096, seed=None, packing=False)

    assert stats.rows == 3 and all(r.n_examples == 1 and r.position_ids[0] == 0 for r in rows)


class OffsetCharTokenizer(CharTokenizer):
    """CharTokenizer with a fast tokenizer's `__call__(..., return_offsets_mapping=True)`."""

    def __call__(self, text: str, add_special_tokens: bool = True, return_offsets_mapping: bool = False):
        ids, offsets, at = [], [], 0
        for piece in re.split(f"({re.escape(START)}|{re.escape(END)})", text):
            if piece in SPECIAL:
                ids.append(SPECIAL[piece])
                offsets.append((at, at + len(piece)))
            else:
                ids.extend(1000 + ord(c) for c in piece)
                offsets.extend((at + i, at + i + 1) for i in range(len(piece)))
            at += len(piece)
        return {"input_ids": ids, "offset_mapping": offsets}


TWO_CALLS = [
    {"role": "user", "content": "17*23 and 2+2?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "a", "name": "calculator", "arguments": {"expression": "17*23"}},
        {"id": "b", "name": "calculator", "arguments": {"expression": "2+2"}},
    ]},
]


def test_the_tokens_after_each_tool_call_close_are_the_decisions():
    tok = OffsetCharTokenizer()
    ex = tokenize_example(TWO_CALLS, TOOLS, tok, max_seq_len=4096)

    assert len(ex.decisions) == 2
    assert [tok.decode([ex.input_ids[i]]) for i in ex.decisions] == [">", ">"]
    for i in ex.decisions:
        assert ex.labels[i] != IGNORE, "a decision is a trained token"
        assert tok.decode(ex.input_ids[i - 11 : i]) == "</tool_call"
    assert ex.input_ids[ex.decisions[1] + 1] == SPECIAL[END], "the last decision ends the turn"


def test_a_tokenizer_without_offsets_marks_no_decision_and_truncation_drops_cut_ones():
    assert tokenize_example(TWO_CALLS, TOOLS, TOK, max_seq_len=4096).decisions == ()
    full = tokenize_example(TWO_CALLS, TOOLS, OffsetCharTokenizer(), max_seq_len=4096)
    cut = tokenize_example(TWO_CALLS, TOOLS, OffsetCharTokenizer(), max_seq_len=full.decisions[1])
    assert cut.decisions == full.decisions[:1]
