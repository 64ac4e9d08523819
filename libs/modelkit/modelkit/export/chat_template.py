"""The exported GGUF's `tokenizer.chat_template`: a Jinja template that renders the project's Gemma
turn format (`modelkit.chat_format.render_prompt`), tools included, so that llama.cpp's server,
llama-cpp-python's `llama_cpp.server`, LM Studio, vLLM or transformers' `apply_chat_template`
prompt an exported model exactly as the runner does.

It is written for the chat-template environment those hosts share (transformers' and
llama-cpp-python's: a sandbox, `tojson(x, ensure_ascii, indent, separators, sort_keys)`,
`raise_exception`, `bos_token`, `add_generation_prompt`), with no raw newline between tags, so
`trim_blocks` / `lstrip_blocks` change nothing. The tests render it with llama-cpp-python's own
`Jinja2ChatFormatter` and compare it with `render_prompt` (BOS first: the template writes it, the
runner's engine adds it).

Where it can differ from `render_prompt` (known, by construction):
- tool-call arguments given as a JSON string (OpenAI's `function.arguments`) are written as that
  string; `render_prompt` parses and re-writes them (`{"city": "Oslo"}` with `, ` and `: ` and keys
  in the schema's order renders the same);
- nested objects inside arguments keep their own key order (the top level follows the schema's
  order, as `chat_format.canonical_arguments` does; a template cannot rebuild a mapping).
"""

from __future__ import annotations

from ..chat_format import END, START, TOOL_INSTRUCTIONS


def _literal(text: str) -> str:
    """A Jinja string literal for `text`."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


_ASCII = "ensure_ascii=true"
_FLUSH = (  # the pending user/tool texts as one user turn; the preamble goes in the first
    "{%- if ns.pend -%}"
    f"{{{{ {_literal(START + 'user' + chr(10))} }}}}"
    '{%- if ns.first and ns.pre -%}{{ ns.pre ~ "\\n\\n" }}{%- endif -%}'
    '{{ ns.pend | join("\\n") }}'
    f"{{{{ {_literal(END + chr(10))} }}}}"
    "{%- set ns.first = false -%}{%- set ns.pend = [] -%}"
    "{%- endif -%}"
)
_ARGUMENTS = (  # one call's arguments, keys in the schema's order (chat_format.canonical_arguments, top level)
    "{%- if f.arguments is string -%}{%- set ns.args = f.arguments -%}"
    "{%- else -%}"
    "{%- set args = f.arguments or {} -%}{%- set ns.params = none -%}"
    "{%- for t in tools or [] -%}{%- set tf = t.function if t.function is defined else t -%}"
    "{%- if tf.name == f.name -%}{%- set ns.params = tf.parameters -%}{%- endif -%}{%- endfor -%}"
    "{%- set props = ns.params.properties if (ns.params is mapping and ns.params.properties is mapping) else {} -%}"
    "{%- set req = (ns.params.required or []) if ns.params is mapping else [] -%}"
    "{%- set ns.keys = [] -%}"
    "{%- for k in props | list | sort(case_sensitive=true) -%}"
    "{%- if k in req and k in args -%}{%- set ns.keys = ns.keys + [k] -%}{%- endif -%}{%- endfor -%}"
    "{%- for k in props | list | sort(case_sensitive=true) -%}"
    "{%- if k not in req and k in args -%}{%- set ns.keys = ns.keys + [k] -%}{%- endif -%}{%- endfor -%}"
    "{%- for k in args -%}{%- if k not in props -%}{%- set ns.keys = ns.keys + [k] -%}{%- endif -%}{%- endfor -%}"
    '{%- set ns.args = "{" -%}'
    "{%- for k in ns.keys -%}"
    '{%- set ns.args = ns.args ~ (", " if not loop.first else "") ~ (k | tojson(' + _ASCII + ')) ~ ": "'
    ' ~ (args[k] | tojson(separators=(", ", ": "), ' + _ASCII + ")) -%}"
    "{%- endfor -%}"
    '{%- set ns.args = ns.args ~ "}" -%}'
    "{%- endif -%}"
)
_ASSISTANT = (
    "{%- if ns.first and not ns.pend and ns.pre -%}{%- set ns.pend = [\"\"] -%}{%- endif -%}"
    + _FLUSH
    + f"{{{{ {_literal(START + 'model' + chr(10))} }}}}"
    + "{%- set text = (m.content or \"\") | trim -%}"
    "{%- if m.tool_calls -%}"
    '{%- if text -%}{{ text ~ "\\n" }}{%- endif -%}'
    "{%- for c in m.tool_calls -%}{%- set f = c.function if c.function is defined else c -%}"
    + _ARGUMENTS
    + '{{ "<tool_call>{\\"name\\": " ~ (f.name | tojson(' + _ASCII + ')) ~ ", \\"arguments\\": " ~ ns.args'
    ' ~ "}</tool_call>" }}'
    "{%- endfor -%}"
    "{%- else -%}{{ text }}{%- endif -%}"
    + f"{{{{ {_literal(END + chr(10))} }}}}"
)

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    '{%- set ns = namespace(pre="", tb="", first=true, pend=[], args="", keys=[], params=none) -%}'
    "{%- for m in messages -%}{%- if m.role == \"system\" and m.content -%}"
    '{%- set ns.pre = ns.pre ~ ("\\n\\n" if ns.pre else "") ~ m.content -%}'
    "{%- endif -%}{%- endfor -%}"
    "{%- if tools -%}"
    f"{{%- set ns.tb = {_literal(TOOL_INSTRUCTIONS)} -%}}"
    "{%- for t in tools -%}"
    '{%- set ns.tb = ns.tb ~ ("\\n" if not loop.first else "")'
    ' ~ ((t.function if t.function is defined else t) | tojson(separators=(",", ":"), sort_keys=true, '
    + _ASCII + ")) -%}"
    "{%- endfor -%}"
    '{%- set ns.pre = ns.pre ~ ("\\n\\n" if ns.pre else "") ~ ns.tb -%}'
    "{%- endif -%}"
    "{%- for m in messages -%}"
    '{%- if m.role == "user" -%}{%- set ns.pend = ns.pend + [m.content or ""] -%}'
    '{%- elif m.role == "tool" -%}'
    "{%- set body = m.content if m.content is string else (m.content | tojson(" + _ASCII + ")) -%}"
    "{%- set ns.pend = ns.pend + ['<tool_result name=\"' ~ (m.name or \"tool\") ~ '\">' ~ body ~ '</tool_result>'] -%}"
    '{%- elif m.role == "assistant" -%}' + _ASSISTANT +
    '{%- elif m.role != "system" -%}{{ raise_exception("unknown role " ~ m.role) }}'
    "{%- endif -%}"
    "{%- endfor -%}"
    + _FLUSH
    + f"{{%- if add_generation_prompt -%}}{{{{ {_literal(START + 'model' + chr(10))} }}}}{{%- endif -%}}"
)
