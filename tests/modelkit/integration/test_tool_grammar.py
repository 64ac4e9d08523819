"""The tool grammars in llama.cpp itself: they load with the bundled model's vocabulary, accept the
text the model is trained on (chat_format.format_tool_calls) with end-of-turn after it, and refuse
what tool_choice and the schemas forbid. Texts are fed token by token through llama.cpp's grammar
sampler, as decoding would."""

from __future__ import annotations

import ctypes

import pytest

from modelkit.chat_format import END_OF_TURN_ID, canonical_arguments, format_tool_calls, render_segments
from modelkit.tool_grammar import GrammarCache, ToolConstraint, build_grammar
from tests.modelkit.unit.test_tool_grammar import CALC, TOOLS, tool

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vocab_model(bundled_gguf):
    import llama_cpp

    llm = llama_cpp.Llama(str(bundled_gguf), vocab_only=True, verbose=False)
    yield llm
    llm.close()


def accepts(llm, grammar: str, text: str, *, then_end: bool = True) -> bool:
    """Whether llama.cpp's grammar sampler lets `text` (then <end_of_turn>) through, token by token."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, grammar.encode(), b"root")
    assert sampler, "llama.cpp could not load the grammar"
    try:
        tokens = llm.tokenize(text.encode(), add_bos=False, special=False) + ([END_OF_TURN_ID] if then_end else [])
        for token in tokens:
            one = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
            candidates = llama_cpp.llama_token_data_array(one, 1, -1, False)
            llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
            if one[0].logit == float("-inf"):
                return False
            llama_cpp.llama_sampler_accept(sampler, token)
        return True
    finally:
        llama_cpp.llama_sampler_free(sampler)


def grammar(mode: str = "auto", name: str | None = None, tools=TOOLS) -> str:
    return build_grammar(ToolConstraint(tools, mode, name), cache=GrammarCache()).text


CALL = format_tool_calls([{"name": "calculator", "arguments": {"expression": "17*23"}}])
PARALLEL = format_tool_calls([{"name": "calculator", "arguments": {"expression": "1+1"}},
                              {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}])
WEATHER = format_tool_calls([{"name": "get_weather", "arguments": {"city": "Oslo"}}])
ANSWER = "17*23 is 391. (A < B, and <tool is not a tag.)"


def test_the_trained_call_text_and_the_end_of_turn_pass(vocab_model):
    assert CALL == '<tool_call>{"name": "calculator", "arguments": {"expression": "17*23"}}</tool_call>'
    for mode in ("auto", "required"):
        assert accepts(vocab_model, grammar(mode), CALL)
        assert accepts(vocab_model, grammar(mode), PARALLEL)
    assert accepts(vocab_model, grammar(), CALL.replace(", ", ",").replace(": ", ":"))  # spaces are optional
    assert not accepts(vocab_model, grammar(), CALL[:-len("</tool_call>")])  # no end before the block closes


def test_auto_takes_text_that_never_opens_a_call(vocab_model):
    assert accepts(vocab_model, grammar(), ANSWER)
    assert accepts(vocab_model, grammar(), "")
    assert not accepts(vocab_model, grammar(), "Let me see. " + CALL)  # no text before calls
    assert not accepts(vocab_model, grammar(), "I'd write <tool_call> here")


def test_required_needs_a_call(vocab_model):
    assert not accepts(vocab_model, grammar("required"), ANSWER)
    assert not accepts(vocab_model, grammar("required"), "")


def test_a_named_choice_takes_only_that_tool(vocab_model):
    named = grammar(name="get_weather")
    assert accepts(vocab_model, named, WEATHER)
    assert not accepts(vocab_model, named, CALL)
    assert not accepts(vocab_model, named, ANSWER)


def test_none_takes_text_only(vocab_model):
    assert accepts(vocab_model, grammar("none"), ANSWER)
    assert not accepts(vocab_model, grammar("none"), CALL)


@pytest.mark.parametrize("call", [
    {"name": "calculator", "arguments": {}},  # a required parameter missing
    {"name": "calculator", "arguments": {"expression": 17}},  # wrong type
    {"name": "calculator", "arguments": {"expression": "1", "extra": 1}},  # unknown key in a closed object
    {"name": "get_weather", "arguments": {"city": "Oslo", "unit": "kelvin"}},  # not in the enum
    {"name": "calc", "arguments": {"expression": "1"}},  # not an offered name
], ids=["missing-required", "wrong-type", "unknown-key", "enum", "unknown-name"])
def test_calls_that_break_their_schema_do_not_pass(vocab_model, call):
    assert not accepts(vocab_model, grammar("required"), format_tool_calls([call]))


def test_numbers_integers_nesting_and_arrays_hold(vocab_model):
    order = tool("order", {"type": "object", "properties": {
        "qty": {"type": "integer"}, "price": {"type": "number"},
        "items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}},
                                             "required": ["sku"]}},
    }, "required": ["qty", "price"]})
    g = grammar("required", tools=(order,))

    def call(arguments):  # as training writes it: arguments in the grammar's key order
        return format_tool_calls([{"name": "order", "arguments": canonical_arguments(order["function"]["parameters"],
                                                                                      arguments)}])

    assert accepts(vocab_model, g, call({"qty": 2, "price": 9.5, "items": [{"sku": "a"}, {"sku": "b"}]}))
    assert accepts(vocab_model, g, call({"qty": 2, "price": 9}))
    assert not accepts(vocab_model, g, call({"qty": 2.5, "price": 9}))
    assert not accepts(vocab_model, g, call({"qty": 2, "price": 9, "items": [{"name": "a"}]}))


def test_a_fallback_tool_takes_any_json_object_as_arguments(vocab_model):
    loose = tool("lookup", {"type": "object", "properties": {"code": {"type": "string", "pattern": "[A-Z]{3}"}}})
    g = build_grammar(ToolConstraint((CALC, loose), "required"), cache=GrammarCache())

    assert g.unconstrained_tools == ("lookup",)
    assert accepts(vocab_model, g.text, format_tool_calls([{"name": "lookup", "arguments": {"any": [1, {"x": None}]}}]))
    assert not accepts(vocab_model, g.text, format_tool_calls([{"name": "lookup", "arguments": [1]}]))


def test_training_text_fits_the_grammar_whatever_order_storage_gave_the_keys(vocab_model):
    """Postgres JSONB reorders keys (by length, then bytes): the tools and calls a dataset is built
    from come back in another order than the client sent. Training text and grammar both follow
    the schema's names only, so what the model learns is what it may decode."""
    params = {"type": "object", "properties": {"value": {"type": "number"}, "from_unit": {"type": "string"},
                                               "to_unit": {"type": "string"}, "note": {"type": "string"}},
              "required": ["value", "from_unit", "to_unit"]}
    shuffled = {**params, "properties": dict(reversed(list(params["properties"].items())))}
    g = grammar("required", tools=(tool("convert", params),))
    for schema in (params, shuffled):
        messages = [{"role": "user", "content": "Convert 3 m to ft."},
                    {"role": "assistant", "tool_calls": [{"id": "c", "name": "convert", "arguments":
                                                          {"to_unit": "ft", "value": 3, "from_unit": "m"}}]}]
        trained = [s.text for s in render_segments(messages, [tool("convert", schema)]) if s.trainable][0]
        assert trained.startswith('<tool_call>{"name": "convert", "arguments": {"from_unit": "m", "to_unit": "ft", '
                                  '"value": 3}}')
        assert accepts(vocab_model, g, trained.removesuffix("<end_of_turn>"))


def test_the_runners_own_tools_get_a_grammar_llama_cpp_loads(vocab_model):
    """The python tool's `maxLength: 20000` once crashed llama.cpp's grammar parser (a stack
    overflow in the load check); http_get's 2048 was refused. Large bounds are left to the
    validator, so every server tool stays constrained."""
    from agent_runner.tools.calculator import CalculatorTool
    from agent_runner.tools.http_get import HttpGetTool
    from agent_runner.tools.python_sandbox import PythonTool
    from modelkit.decoding import grammar_loads

    tools = tuple(t.spec.model_dump() for t in (CalculatorTool, HttpGetTool, PythonTool))
    g = build_grammar(ToolConstraint(tools, "auto"), compiles=lambda text: grammar_loads(vocab_model, text),
                      cache=GrammarCache())
    assert g.unconstrained_tools == ()
    assert accepts(vocab_model, g.text, format_tool_calls([{"name": "python", "arguments": {"code": "print(1)"}}]))
