"""GBNF grammars for one model turn of the project's turn format (`chat_format`), built from the
offered tools' JSON Schemas, so a constrained decoder can only write what the runner accepts.

A turn is either a plain-text answer or one or more call blocks, one per call (several blocks
are parallel calls), exactly as `format_tool_calls` renders them:

    <tool_call>{"name": "calculator", "arguments": {"expression": "17*23"}}</tool_call>

`tool_choice` picks the shape: auto = text or calls, required = calls, a named tool = calls of
that tool only, none = text only. With an `answer_schema` (OpenAI's `response_format`) the text is
JSON of that schema instead (any JSON object for `json_object`); a schema the converter cannot
express leaves the text free. Plain text never contains `<tool_call>` (so `parse_output`
finds no call in it); text before a call block is not allowed either.

Each block's JSON comes from llama-cpp-python's JSON-Schema converter (`llama_grammar.
SchemaConverter`, llama.cpp's json-schema-to-grammar port) applied to
`{"name": <const>, "arguments": <the tool's parameters>}`. What that gives, and our decisions:

- keys come in name order, required ones first (`chat_format.canonical_schema`: the schema's
  own key order is not kept by storage, so training text is written in the same order by
  `chat_format.canonical_arguments`); whitespace is at most one space after `{`,
  `,`, `:` and values, so the trained text (", " and ": " separators) is accepted as is;
- an object schema with `properties` that does not say `additionalProperties` is closed (no
  unknown keys). The converter does this; we keep it: an output without extra keys is valid
  either way, and a tool's own keys are what the model was shown;
- a tool whose schema the converter cannot express — it raises, or the schema uses a keyword
  it would silently drop (`minimum`, `not`, `uniqueItems`, siblings of `anyOf`, ...; see
  `unsupported_reason`) — gets free JSON arguments (any JSON object) under its own name, and is
  listed in `ToolGrammar.unconstrained_tools`. Never a crash;
- `format` is an annotation here, as it is for the runner's validator (no format checker):
  date/time/uuid formats are constrained, others are plain strings;
- `oneOf` is decoded as `anyOf` (at least one branch, not exactly one).

Grammars are cached by a content hash of (tools, choice), so a repeat costs a hash.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .chat_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, canonical_schema

Mode = Literal["auto", "required", "none"]
MODES: tuple[str, ...] = ("auto", "required", "none")
_PLAIN_NAME = re.compile(r"^[^\\\"\x00-\x1f]+$")  # no character JSON would escape in the name literal


class ToolChoiceError(ValueError):
    """A tool_choice that cannot hold: it names a tool that is not offered, or requires a call
    with no tool offered."""


@dataclass(frozen=True)
class ToolConstraint:
    """What one model turn may say: the offered tools (OpenAI format, as the runner renders
    them) and the tool choice (`mode`, or `name` for one forced tool)."""

    tools: tuple[Mapping[str, Any], ...]
    mode: Mode = "auto"
    name: str | None = None  # a named choice: calls of this tool only (mode is then "required")
    answer_schema: Mapping[str, Any] | None = None  # a text answer must be JSON of this schema (response_format)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tools", tuple(self.tools))
        if self.mode not in MODES:
            raise ValueError(f"tool choice mode must be one of {MODES}, not {self.mode!r}")
        names = tool_names(self.tools)
        if bad := [n for n in names if not _PLAIN_NAME.match(n)]:
            raise ValueError(f"tool names must match {_PLAIN_NAME.pattern}: {bad}")
        if self.mode == "required" and not names:
            raise ToolChoiceError("tool_choice is 'required' but no tool is offered")
        if self.name is not None:
            if self.name not in names:
                raise ToolChoiceError(f"tool_choice names {self.name!r}, which is not an offered tool")
            object.__setattr__(self, "mode", "required")

    def refusal(self, tool: str | None) -> str | None:
        """Why this choice forbids a call of `tool` (None when it allows it): the rule the grammar
        enforces, for outputs decoded without one."""
        if self.mode == "none":
            return "tool_choice is 'none': answer in text, without tool calls"
        if self.name is not None and tool != self.name:
            return f"tool_choice requires a call of {self.name!r}"
        return None

    @property
    def choice(self) -> str:
        """The choice in words: a mode or the forced tool's name."""
        return self.name if self.name is not None else self.mode

    @property
    def key(self) -> str:
        """Content hash of the tools and the choice (the cache key of its grammar)."""
        text = json.dumps([list(self.tools), self.mode, self.name, self.answer_schema], sort_keys=True,
                          separators=(",", ":"),
                          ensure_ascii=False, default=repr)
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class ToolGrammar:
    text: str  # GBNF, start rule `root`
    unconstrained_tools: tuple[str, ...]  # offered tools decoded with free JSON arguments
    key: str  # content hash of the text


def function_of(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    fn = tool.get("function")
    return fn if isinstance(fn, Mapping) else tool


def tool_names(tools: Iterable[Mapping[str, Any]]) -> list[str]:
    return [function_of(t)["name"] for t in tools]


# --- what the converter expresses ----------------------------------------------------------

# JSON Schema validation keywords the converter does not enforce (it would drop them silently).
_UNENFORCED = frozenset({
    "not", "if", "then", "else", "allOf", "dependentRequired", "dependentSchemas", "dependencies",
    "patternProperties", "propertyNames", "minProperties", "maxProperties", "unevaluatedProperties",
    "unevaluatedItems", "additionalItems", "contains", "minContains", "maxContains", "uniqueItems",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "$dynamicRef",
    "$recursiveRef",
})
# ... and those it does. Anything else (description, default, format, BFCL's `optional`, ...)
# is an annotation: the runner's validator does not check it either.
_ENFORCED = frozenset({
    "type", "enum", "const", "properties", "required", "additionalProperties", "items", "prefixItems",
    "minItems", "maxItems", "minLength", "maxLength", "pattern", "anyOf", "oneOf", "$ref",
})
_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
_STRING_LENGTH = frozenset({"minLength", "maxLength"})
_ARRAY_LENGTH = frozenset({"minItems", "maxItems"})
# The converter copies pattern text into GBNF; backslash escapes and groups like `(?=` come
# out as GBNF llama.cpp cannot parse (or wrong), so only plain anchored patterns are kept.
_SAFE_PATTERN = re.compile(r"^\^[^\\]*\$$")


def unsupported_reason(schema: Any) -> str | None:
    """Why the converter cannot express `schema` exactly (None when it can). Conservative: a
    keyword it would drop makes the whole schema unsupported, since the grammar would then let
    through arguments the runner's validator rejects."""
    return _Checker(schema).reason(schema, "parameters")


_FORMATS = frozenset({  # string formats the converter constrains (it ignores minLength beside them)"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4",
                                  "uuid5"})


class _Checker:
    """One walk over a parameters schema; local `$ref`s are followed once each."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.seen: set[str] = set()

    def reason(self, schema: Any, where: str) -> str | None:
        if isinstance(schema, bool):
            return None if schema else f"{where}: false schema"
        if not isinstance(schema, Mapping):
            return f"{where}: not a schema"
        keys = {k for k in schema if k in _ENFORCED or k in _UNENFORCED}
        for keyword in sorted(keys & _UNENFORCED):
            return f"{where}: {keyword!r} is not enforced by the grammar"
        if "$ref" in schema:
            return _siblings(keys, {"$ref"}, where) or self._ref(str(schema["$ref"]), where)
        for union in ("anyOf", "oneOf"):
            if union in schema:
                return _siblings(keys, {union}, where) or _first(
                    self.reason(b, f"{where}/{union}/{i}") for i, b in enumerate(schema[union]))
        types = schema.get("type")
        if isinstance(types, list):
            if not all(t in _TYPES for t in types):
                return f"{where}: unknown type in {types}"
            return _siblings(keys, {"type"}, where)
        if types is not None and types not in _TYPES:
            return f"{where}: unknown type {types!r}"
        if "const" in schema or "enum" in schema:
            values = [schema["const"]] if "const" in schema else list(schema["enum"])
            if any("\\" in json.dumps(v, ensure_ascii=False) for v in values):
                return f"{where}: enum/const values with backslashes are not expressed correctly"
            return None
        if types in (None, "object") and keys & {"properties", "required", "additionalProperties"}:
            return self._object(schema, where)
        if types in (None, "array") and keys & ({"items", "prefixItems"} | _ARRAY_LENGTH):
            return self._array(schema, keys, where)
        if types in (None, "string") and "pattern" in schema:
            pattern = str(schema["pattern"])
            if not _SAFE_PATTERN.match(pattern) or "(?" in pattern:
                return f"{where}: pattern {pattern!r} is outside the supported subset (anchored, no escapes)"
            return _siblings(keys, {"type", "pattern"}, where)
        if keys & _STRING_LENGTH and (types != "string" or schema.get("format") in _FORMATS):
            return f"{where}: minLength/maxLength need type string (and no date/uuid format)"
        return None

    def _ref(self, ref: str, where: str) -> str | None:
        if not ref.startswith("#/"):
            return f"{where}: $ref {ref!r} is not local"
        if ref in self.seen:
            return None
        self.seen.add(ref)
        target: Any = self.root
        for part in ref[2:].split("/"):
            if not isinstance(target, Mapping) or part not in target:
                return f"{where}: $ref {ref!r} does not resolve"
            target = target[part]
        return self.reason(target, ref)

    def _object(self, schema: Mapping[str, Any], where: str) -> str | None:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        additional = schema.get("additionalProperties")
        if missing := sorted(required - set(properties)):
            return f"{where}: required {missing} not among the properties"
        if isinstance(additional, Mapping) and (problem := self.reason(additional, f"{where}/additionalProperties")):
            return problem
        return _first(self.reason(s, f"{where}/{name}") for name, s in properties.items())

    def _array(self, schema: Mapping[str, Any], keys: set[str], where: str) -> str | None:
        if "prefixItems" in schema:
            if keys & (_ARRAY_LENGTH | {"items"}):
                return f"{where}: prefixItems with items/minItems/maxItems is not expressed"
            return _first(self.reason(s, f"{where}/{i}") for i, s in enumerate(schema["prefixItems"]))
        if "items" not in schema:
            return f"{where}: minItems/maxItems need items"
        return self.reason(schema["items"], f"{where}/items")


def _siblings(keys: set[str], allowed: set[str], where: str) -> str | None:
    extra = sorted(keys - allowed)
    return f"{where}: {extra} beside {sorted(allowed)} would be dropped" if extra else None


def _first(reasons: Iterable[str | None]) -> str | None:
    return next((r for r in reasons if r is not None), None)


# --- GBNF --------------------------------------------------------------------------------

# The converter's string character admits raw control characters, which JSON (and json.loads,
# hence parse_output) rejects; llama.cpp's own converter excludes them, as we do.
_CHAR_RULE = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'
_FREE_ARGUMENTS: dict[str, Any] = {"type": "object"}
_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|[a-zA-Z0-9-]+|.', re.S)


def _literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


MAX_REPETITION = 100  # length/item bounds above this are left to the validator (see `loosened`)


def loosened(schema: Any) -> Any:
    """The schema without repetition bounds above MAX_REPETITION (`maxLength`, `minLength`,
    `maxItems`, `minItems`). The converter writes a bound of N as N nested optional repeats:
    llama.cpp refuses a grammar past ~2000 and its parser overflowed the stack on the python
    tool's `maxLength: 20000`. Such bounds constrain nothing a model writes in one turn; the
    runner's validator still enforces them after decoding."""
    if isinstance(schema, Mapping):
        return {k: loosened(v) for k, v in schema.items()
                if not (k in _BOUNDS and isinstance(v, int) and v > MAX_REPETITION)}
    if isinstance(schema, list):
        return [loosened(v) for v in schema]
    return schema


_BOUNDS = frozenset({"maxLength", "minLength", "maxItems", "minItems"})


def call_json_grammar(name: str, parameters: Any) -> str:
    """GBNF (start rule `root`) for one call's JSON of tool `name`; raises what the converter raises."""
    from llama_cpp.llama_grammar import SchemaConverter

    # keys decode in name order (chat_format.canonical_arguments); huge bounds are left to the validator
    parameters = loosened(canonical_schema(parameters))
    schema = {
        "type": "object",
        "properties": {"name": {"const": name}, "arguments": parameters},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }
    converter = SchemaConverter(prop_order={"name": 0, "arguments": 1}, allow_fetch=False, dotall=False,
                                raw_pattern=False)
    # refs resolve against the parameters, where their $defs live
    schema["properties"]["arguments"] = converter.resolve_refs(json.loads(json.dumps(parameters)), "")
    converter.visit(schema, "")
    return converter.format_grammar()


def _prefixed_rules(grammar: str, prefix: str) -> list[str]:
    """The rules of `grammar` with every rule name prefixed (one namespace per tool)."""
    rules: dict[str, str] = {}
    for line in grammar.splitlines():
        if line.strip():
            name, body = line.split(" ::= ", 1)
            rules[name.strip()] = body
    if rules.get("char", "").startswith('[^"\\\\] |'):
        rules["char"] = _CHAR_RULE

    def rename(body: str) -> str:
        return "".join(prefix + tok if tok in rules else tok for tok in _TOKEN.findall(body))

    return [f"{prefix}{name} ::= {rename(body)}" for name, body in rules.items()]


def _text_rules() -> list[str]:
    """Text that never contains `<tool_call>`: a right-linear grammar whose rule `text-k` means
    "the last k characters are the tag's first k"."""
    tag = TOOL_CALL_OPEN
    first = tag[0]
    lines = [f'text ::= "" | [^{_class(first)}] text | {_literal(first)} text-1']
    for k in range(1, len(tag)):
        nxt = tag[k]
        excluded = _class(first) + ("" if nxt == first else _class(nxt))
        alternatives = ['""', f"[^{excluded}] text", f"{_literal(first)} text-1"]
        if k < len(tag) - 1:
            alternatives.append(f"{_literal(nxt)} text-{k + 1}")
        lines.append(f"text-{k} ::= " + " | ".join(alternatives))
    return lines


def _class(ch: str) -> str:
    return "\\" + ch if ch in "]\\^-" else ch


def _build(constraint: ToolConstraint, compiles: Callable[[str], bool] | None) -> ToolGrammar:
    grammar = _assemble(constraint, compiles, free=False)
    if compiles is not None and not compiles(grammar.text):  # each part loads but the whole does not:
        grammar = _assemble(constraint, None, free=True)  # every tool free rather than no grammar
    return grammar


def _assemble(constraint: ToolConstraint, compiles: Callable[[str], bool] | None, *, free: bool) -> ToolGrammar:
    answer = None if free or constraint.answer_schema is None else _answer_rules(constraint.answer_schema, compiles)
    text_rules = answer if answer is not None else _text_rules()
    text = "a-root" if answer is not None else "text"
    if constraint.mode == "none" or not constraint.tools:
        return _grammar([f"root ::= {text}", *text_rules], ())
    rules: list[str] = []
    alternatives: list[str] = []
    unconstrained: list[str] = []
    for i, tool in enumerate(constraint.tools):
        fn = function_of(tool)
        name = fn["name"]
        if constraint.name is not None and name != constraint.name:
            continue
        prefix = f"t{i}-"
        parameters = fn.get("parameters") or {"type": "object", "properties": {}}
        tool_rules = None if free else _tool_rules(name, parameters, prefix, compiles)
        if tool_rules is None:
            unconstrained.append(name)
            tool_rules = _prefixed_rules(call_json_grammar(name, _FREE_ARGUMENTS), prefix)
        rules.extend(tool_rules)
        alternatives.append(f"{prefix}root")
    call = f"call ::= {_literal(TOOL_CALL_OPEN)} ({' | '.join(alternatives)}) {_literal(TOOL_CALL_CLOSE)}"
    if constraint.mode == "required":
        head = ["root ::= call+"]
    else:
        head = [f"root ::= {text} | call+", *text_rules]
    return _grammar([*head, call, *rules], tuple(unconstrained))


def answer_json_grammar(schema: Any) -> str:
    """GBNF (start rule `root`) for a text answer that is JSON of `schema` (`{"type": "object"}`:
    any JSON object); raises what the converter raises."""
    from llama_cpp.llama_grammar import SchemaConverter

    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    schema = converter.resolve_refs(json.loads(json.dumps(loosened(canonical_schema(schema)))), "")
    converter.visit(schema, "")
    return converter.format_grammar()


def _answer_rules(schema: Any, compiles: Callable[[str], bool] | None) -> list[str] | None:
    """The answer's JSON rules (prefix `a-`), or None when its schema cannot be expressed: the answer
    is then decoded as free text."""
    if unsupported_reason(schema) is not None:
        return None
    try:
        rules = _prefixed_rules(answer_json_grammar(schema), "a-")
    except (ValueError, AssertionError, KeyError, TypeError, IndexError, RecursionError):
        return None
    if compiles is not None and not compiles(_call_grammar(rules, "a-")):
        return None
    return rules


def call_schema(constraint: ToolConstraint) -> tuple[dict[str, Any], tuple[str, ...]]:
    """JSON Schema of ONE call's JSON (`{"name": ..., "arguments": ...}`) under a calling choice,
    for servers that take a schema rather than a grammar (Ollama's `format`); tools whose schema
    the converter cannot express get free arguments here too, so every engine reports the same
    fallbacks. Also the list of those tools."""
    if constraint.mode == "none":
        raise ValueError("tool_choice 'none' has no call schema")
    branches: list[dict[str, Any]] = []
    unconstrained: list[str] = []
    for tool in constraint.tools:
        fn = function_of(tool)
        if constraint.name is not None and fn["name"] != constraint.name:
            continue
        parameters = fn.get("parameters") or {"type": "object", "properties": {}}
        if unsupported_reason(parameters) is not None or '"$ref"' in json.dumps(parameters):
            unconstrained.append(fn["name"])  # (a $ref would resolve against the wrapper, not the tool)
            parameters = _FREE_ARGUMENTS
        branches.append({"type": "object", "properties": {"name": {"const": fn["name"]},
                                                          "arguments": loosened(canonical_schema(parameters))},
                         "required": ["name", "arguments"], "additionalProperties": False})
    return (branches[0] if len(branches) == 1 else {"anyOf": branches}), tuple(unconstrained)


def _tool_rules(name: str, parameters: Any, prefix: str, compiles: Callable[[str], bool] | None) -> list[str] | None:
    """The call-JSON rules of one tool, or None when its schema cannot be expressed."""
    if unsupported_reason(parameters) is not None:
        return None
    try:
        rules = _prefixed_rules(call_json_grammar(name, parameters), prefix)
    except (ValueError, AssertionError, KeyError, TypeError, IndexError, RecursionError):
        return None  # the converter's own refusals (it asserts on patterns and refs)
    if compiles is not None and not compiles(_call_grammar(rules, prefix)):
        return None
    return rules


def _grammar(lines: Sequence[str], unconstrained: tuple[str, ...]) -> ToolGrammar:
    text = "\n".join(lines) + "\n"
    return ToolGrammar(text, unconstrained, hashlib.blake2b(text.encode(), digest_size=16).hexdigest())


def _call_grammar(tool_rules: Sequence[str], prefix: str) -> str:
    return "\n".join([f"root ::= {prefix}root", *tool_rules]) + "\n"


class GrammarCache:
    """Built grammars (and whatever the engine compiles from them) by content hash, bounded LRU."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str], make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            if len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


_CACHE = GrammarCache()


def build_grammar(constraint: ToolConstraint, *, compiles: Callable[[str], bool] | None = None,
                  cache: GrammarCache | None = None) -> ToolGrammar:
    """The grammar of one turn under `constraint` (cached by content hash).

    `compiles` (optional, from an engine that holds a vocabulary) checks that a tool's call
    grammar is one llama.cpp can load; a tool whose grammar does not is decoded freely."""
    kind = "grammar" if compiles is None else "grammar-checked"
    return (cache if cache is not None else _CACHE).get((kind, constraint.key), lambda: _build(constraint, compiles))

