"""A Go text/template evaluator for the subset the Modelfile TEMPLATE uses, and the values Ollama's
chat endpoint hands a template, so tests can render `modelkit.export.modelfile.TEMPLATE` and compare
it with `chat_format.render_prompt` without an Ollama binary (see modelfile.py's docstring for where
real Ollama can differ). Test support only: nothing in the services renders templates.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from modelkit.chat_format import Message, _call_dict
from modelkit.export.modelfile import TEMPLATE


def ollama_values(
    messages: Sequence[Message], tools: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """The values Ollama's chat endpoint hands the template for these OpenAI-style messages."""
    system = [m.get("content") or "" for m in messages if m["role"] == "system"]
    collated: list[dict[str, Any]] = []
    for msg in messages:
        content = msg.get("content")
        text = (
            content
            if isinstance(content, str)
            else ("" if content is None else json.dumps(content))
        )
        if collated and collated[-1]["Role"] == msg["role"]:
            collated[-1]["Content"] += "\n\n" + text  # Ollama's collate() merges same-role runs
            continue
        calls = [_call_dict(c) for c in msg.get("tool_calls") or []]
        collated.append(
            {
                "Role": msg["role"],
                "Content": text,
                "ToolName": msg.get("name") or "",
                "ToolCalls": [
                    {"Function": {"Name": c["name"], "Arguments": c.get("arguments") or {}}}
                    for c in calls
                ],
            }
        )
    return {
        "System": "\n\n".join(system),
        "Messages": collated,
        "Tools": [
            {"Type": t.get("type", "function"), "Function": t.get("function", t)} for t in tools
        ],
        "Response": "",
    }


def render_modelfile_template(
    messages: Sequence[Message], tools: Sequence[dict[str, Any]] = (), *, template: str = TEMPLATE
) -> str:
    """What the Modelfile TEMPLATE renders for a chat request (evaluated here, not by Ollama)."""
    return GoTemplate(template).execute(ollama_values(messages, tools))


# --- a Go text/template evaluator for the subset above --------------------------------------------

_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<lp>\()|(?P<rp>\))|(?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)'
    r"|(?P<field>\.(?:[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)?)|(?P<num>-?\d+)|(?P<word>[A-Za-z_][A-Za-z0-9_]*))"
)
_FUNCS = {"and", "or", "not", "eq", "ne", "len", "printf", "json"}


class TemplateError(ValueError):
    """The template uses something outside the supported subset, or fails to evaluate."""


class GoTemplate:
    """Parses and executes: text; `{{ pipeline }}`; `{{ $x := p }}` / `{{ $x = p }}`;
    `{{ if p }}…{{ else if p }}…{{ else }}…{{ end }}`; `{{ range p }}` / `{{ range $i, $v := p }}`;
    pipelines of one command over `.Field`, `$var.Field`, string/int literals, parentheses and the
    functions and/or/not/eq/ne/len/printf (%s, %d, %v only) and Ollama's `json` (Go encoding/json).
    Variables are scoped like Go's: declared in a block, visible until its `end`.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.tree = self._parse(source)

    # parsing -------------------------------------------------------------------------------------
    def _parse(self, source: str) -> list[Any]:
        items = _split_actions(source)
        body, stop = self._block(items, 0)
        if stop is not None:
            raise TemplateError(f"unexpected {{{{ {stop[0]} }}}} at top level")
        return body

    def _block(self, items: list[tuple[str, str]], i: int) -> tuple[list[Any], Any]:
        """Nodes until `end`/`else`; returns (nodes, (terminator, next index)) or (nodes, None)."""
        nodes: list[Any] = []
        while i < len(items):
            kind, text = items[i]
            i += 1
            if kind == "text":
                if text:
                    nodes.append(("text", text))
                continue
            word = text.split(None, 1)[0] if text else ""
            if word == "end" or word == "else":
                return nodes, (text, i)
            if word == "if":
                node, i = self._if(items, text[2:].strip(), i)
                nodes.append(node)
            elif word == "range":
                node, i = self._range(items, text[5:].strip(), i)
                nodes.append(node)
            elif word in {"with", "define", "template", "block", "break", "continue"}:
                raise TemplateError(f"{{{{ {word} }}}} is outside the supported subset")
            else:
                nodes.append(self._statement(text))
        return nodes, None

    def _if(self, items: list[tuple[str, str]], cond: str, i: int) -> tuple[Any, int]:
        branches = [(self._pipeline(cond), None)]
        otherwise: list[Any] = []
        while True:
            body, stop = self._block(items, i)
            if stop is None:
                raise TemplateError("missing {{ end }} for {{ if }}")
            branches[-1] = (branches[-1][0], body)
            term, i = stop
            if term == "end":
                break
            rest = term[4:].strip()
            if rest.startswith("if "):
                branches.append((self._pipeline(rest[3:].strip()), None))
                continue
            if rest:
                raise TemplateError(f"unsupported {{{{ {term} }}}}")
            otherwise, stop = self._block(items, i)
            if stop is None or stop[0] != "end":
                raise TemplateError("missing {{ end }} after {{ else }}")
            i = stop[1]
            break
        return ("if", branches, otherwise), i

    def _range(self, items: list[tuple[str, str]], spec: str, i: int) -> tuple[Any, int]:
        names: list[str] = []
        m = re.match(r"(\$\w+)\s*(?:,\s*(\$\w+)\s*)?:=\s*(.*)$", spec, re.DOTALL)
        if m:
            names = [n for n in (m.group(1), m.group(2)) if n]
            spec = m.group(3)
        body, stop = self._block(items, i)
        if stop is None or stop[0] != "end":
            raise TemplateError("{{ range }} needs a matching {{ end }} (no {{ else }} here)")
        return ("range", names, self._pipeline(spec), body), stop[1]

    def _statement(self, text: str) -> Any:
        m = re.match(r"(\$\w+)\s*(:=|=)\s*(.*)$", text, re.DOTALL)
        if m:
            return (
                "declare" if m.group(2) == ":=" else "assign",
                m.group(1),
                self._pipeline(m.group(3)),
            )
        return ("print", self._pipeline(text))

    def _pipeline(self, text: str) -> Any:
        if "|" in text:
            raise TemplateError("pipes are outside the supported subset")
        tokens = self._tokens(text)
        expr, rest = self._command(tokens)
        if rest:
            raise TemplateError(f"unexpected {rest[0][1]!r} in {text!r}")
        return expr

    @staticmethod
    def _tokens(text: str) -> list[tuple[str, str]]:
        tokens = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise TemplateError(f"cannot parse {text[pos:]!r}")
            kind = m.lastgroup
            tokens.append((kind, m.group(kind)))
            pos = m.end()
            while pos < len(text) and text[pos].isspace():
                pos += 1
        return tokens

    def _command(self, tokens: list[tuple[str, str]]) -> tuple[Any, list[tuple[str, str]]]:
        """A command: a function applied to operands, or a single operand; stops at ')'."""
        if not tokens:
            raise TemplateError("empty command")
        kind, value = tokens[0]
        if kind == "word" and value not in ("true", "false"):
            if value not in _FUNCS:
                raise TemplateError(f"function {value!r} is outside the supported subset")
            args = []
            rest = tokens[1:]
            while rest and rest[0][0] != "rp":
                arg, rest = self._operand(rest)
                args.append(arg)
            return ("call", value, args), rest
        arg, rest = self._operand(tokens)
        return arg, rest

    def _operand(self, tokens: list[tuple[str, str]]) -> tuple[Any, list[tuple[str, str]]]:
        kind, value = tokens[0]
        rest = tokens[1:]
        if kind == "lp":
            expr, rest = self._command(rest)
            if not rest or rest[0][0] != "rp":
                raise TemplateError("missing ')'")
            return expr, rest[1:]
        if kind == "str":
            return ("const", _unquote(value)), rest
        if kind == "num":
            return ("const", int(value)), rest
        if kind == "word" and value in ("true", "false"):
            return ("const", value == "true"), rest
        if kind == "field":
            return ("field", None, [p for p in value.split(".") if p]), rest
        if kind == "var":
            head, *path = value.split(".")
            return ("field", head, path), rest
        raise TemplateError(f"unexpected {value!r}")

    # execution -----------------------------------------------------------------------------------
    def execute(self, data: Any) -> str:
        out: list[str] = []
        self._run(self.tree, data, [{"$": data}], out)
        return "".join(out)

    def _run(
        self, nodes: list[Any], dot: Any, scopes: list[dict[str, Any]], out: list[str]
    ) -> None:
        scopes.append({})
        try:
            for node in nodes:
                kind = node[0]
                if kind == "text":
                    out.append(node[1])
                elif kind == "print":
                    out.append(_print(self._eval(node[1], dot, scopes)))
                elif kind == "declare":
                    scopes[-1][node[1]] = self._eval(node[2], dot, scopes)
                elif kind == "assign":
                    value = self._eval(node[2], dot, scopes)
                    for scope in reversed(scopes):
                        if node[1] in scope:
                            scope[node[1]] = value
                            break
                    else:
                        raise TemplateError(f"undefined variable {node[1]}")
                elif kind == "if":
                    for cond, body in node[1]:
                        if _truth(self._eval(cond, dot, scopes)):
                            self._run(body, dot, scopes, out)
                            break
                    else:
                        self._run(node[2], dot, scopes, out)
                elif kind == "range":
                    self._range_run(node, dot, scopes, out)
        finally:
            scopes.pop()

    def _range_run(self, node: Any, dot: Any, scopes: list[dict[str, Any]], out: list[str]) -> None:
        _, names, expr, body = node
        seq = self._eval(expr, dot, scopes)
        if isinstance(seq, dict):
            pairs = [(k, seq[k]) for k in sorted(seq)]  # Go ranges over maps in key order
        elif isinstance(seq, list | tuple):
            pairs = list(enumerate(seq))
        elif seq is None:
            pairs = []
        else:
            raise TemplateError(f"range can't iterate over {type(seq).__name__}")
        for key, value in pairs:
            scope: dict[str, Any] = {}
            if len(names) == 1:
                scope[names[0]] = value
            elif len(names) == 2:
                scope[names[0]], scope[names[1]] = key, value
            scopes.append(scope)
            try:
                self._run(body, value, scopes, out)
            finally:
                scopes.pop()

    def _eval(self, expr: Any, dot: Any, scopes: list[dict[str, Any]]) -> Any:
        kind = expr[0]
        if kind == "const":
            return expr[1]
        if kind == "field":
            _, head, path = expr
            if head is None:
                value = dot
            else:
                for scope in reversed(scopes):
                    if head in scope:
                        value = scope[head]
                        break
                else:
                    raise TemplateError(f"undefined variable {head}")
            for part in path:
                if not isinstance(value, dict):
                    raise TemplateError(f"can't evaluate field {part} in {type(value).__name__}")
                value = value.get(part)  # missingkey=zero
            return value
        _, name, args = expr
        if name == "and":  # Go: first falsy argument, else the last; evaluated lazily
            value = None
            for arg in args:
                value = self._eval(arg, dot, scopes)
                if not _truth(value):
                    return value
            return value
        if name == "or":
            value = None
            for arg in args:
                value = self._eval(arg, dot, scopes)
                if _truth(value):
                    return value
            return value
        values = [self._eval(a, dot, scopes) for a in args]
        if name == "not":
            return not _truth(values[0])
        if name == "eq":
            return any(values[0] == v for v in values[1:])
        if name == "ne":
            return values[0] != values[1]
        if name == "len":
            return len(values[0])
        if name == "json":
            return go_json(values[0])
        if name == "printf":
            return _printf(values[0], values[1:])
        raise TemplateError(f"function {name!r} is outside the supported subset")


def _split_actions(source: str) -> list[tuple[str, str]]:
    """[("text", ...), ("action", inner text), ...]; quoted strings inside actions may hold '}}'."""
    items: list[tuple[str, str]] = []
    pos = 0
    while (start := source.find("{{", pos)) >= 0:
        items.append(("text", source[pos:start]))
        i = start + 2
        while True:
            if i >= len(source):
                raise TemplateError("unclosed action")
            if source[i] == '"':
                i += 1
                while i < len(source) and source[i] != '"':
                    i += 2 if source[i] == "\\" else 1
                i += 1
            elif source.startswith("}}", i):
                break
            else:
                i += 1
        inner = source[start + 2 : i]
        if inner.startswith("- ") or inner.endswith(" -"):
            raise TemplateError("trim markers are outside the supported subset")
        items.append(("action", inner.strip()))
        pos = i + 2
    items.append(("text", source[pos:]))
    return items


def _unquote(literal: str) -> str:
    escapes = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r"}

    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in escapes:
            raise TemplateError(f"unsupported escape \\{m.group(1)}")
        return escapes[m.group(1)]

    return re.sub(r"\\(.)", sub, literal[1:-1])


def _truth(value: Any) -> bool:
    return bool(value)  # Go: false, 0, nil, and empty strings, slices and maps are false


def _print(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return go_json(value)
    raise TemplateError(f"printing a {type(value).__name__} is outside the supported subset")


def _printf(fmt: str, args: list[Any]) -> str:
    values = iter(args)

    def sub(m: re.Match[str]) -> str:
        if m.group(1) == "%":
            return "%"
        return _print(next(values))

    return re.sub(r"%([sdv%])", sub, fmt)


_GO_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def go_json(value: Any) -> str:
    """Go's `json.Marshal` for JSON-like Python values: compact, map keys sorted, `<>&` escaped,
    non-ASCII text as UTF-8; integral floats print without a fraction (float64 17 → `17`)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TemplateError("json: unsupported value (NaN or infinity)")
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, str):
        return (
            '"'
            + "".join(
                _GO_ESCAPES.get(ch) or (f"\\u{ord(ch):04x}" if ord(ch) < 0x20 else ch)
                for ch in value
            )
            + '"'
        )
    if isinstance(value, dict):
        return "{" + ",".join(f"{go_json(str(k))}:{go_json(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    raise TemplateError(f"json: unsupported type {type(value).__name__}")
