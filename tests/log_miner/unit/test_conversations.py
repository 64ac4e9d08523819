"""Which runs continue which: transcript keys compare what the model saw, not ids."""

from __future__ import annotations

from contracts import ChatMessage, ToolCall
from log_miner.domain.conversations import prefix_keys, transcript_key


def call(id_: str, **args) -> ToolCall:
    return ToolCall(id=id_, name="get_weather", arguments=args)


def test_ids_and_empty_content_do_not_change_the_key():
    runner = [ChatMessage(role="user", content="Weather?"),
              ChatMessage(role="assistant", content=None, tool_calls=[call("call_1_1", city="Lisbon", unit="c")])]
    client = [ChatMessage(role="user", content="Weather?"),
              ChatMessage(role="assistant", content="", tool_calls=[call("call_abc_1", unit="c", city="Lisbon")])]
    assert transcript_key(runner) == transcript_key(client)


def test_what_the_model_saw_changes_the_key():
    base = [ChatMessage(role="user", content="Weather?"),
            ChatMessage(role="assistant", tool_calls=[call("c", city="Lisbon")])]
    for changed in ([ChatMessage(role="user", content="Weather!"), base[1]],
                    [base[0], ChatMessage(role="assistant", tool_calls=[call("c", city="Oslo")])],
                    [base[0], ChatMessage(role="assistant", content="Lisbon")]):
        assert transcript_key(changed) != transcript_key(base)


def test_prefix_keys_are_the_proper_prefixes_ending_on_a_model_turn_longest_first():
    msgs = [ChatMessage(role="system", content="s"), ChatMessage(role="user", content="u"),
            ChatMessage(role="assistant", tool_calls=[call("a", city="x")]),
            ChatMessage(role="tool", tool_call_id="a", content="r"),
            ChatMessage(role="assistant", tool_calls=[call("b", city="y")]),
            ChatMessage(role="tool", tool_call_id="b", content="r2"),
            ChatMessage(role="assistant", content="done")]
    assert prefix_keys(msgs) == [transcript_key(msgs[:5]), transcript_key(msgs[:3])]
    assert prefix_keys(msgs[:2]) == []
