"""The Ollama Modelfile of an exported model, with a TEMPLATE that renders the project's Gemma turn
format (`modelkit.chat_format`) from Ollama's chat values.

Ollama itself is not run here (no Ollama binary on the build hosts). Instead the tests
(`tests/modelkit/gotemplate.py`) evaluate the emitted TEMPLATE with a small evaluator of the exact
Go text/template subset it uses,
on the values Ollama builds for a chat request (`template.Values`: `.System` = the system messages
joined by a blank line, `.Messages` = the messages with consecutive same-role messages merged by a
blank line, `.Tools`), and tests compare the result with `chat_format.render_prompt`.

Where real Ollama can differ from `render_prompt` (known, by construction of Ollama's values):
- consecutive user or tool messages: Ollama merges them with "\\n\\n" (and keeps the first tool's
  name); `render_prompt` joins them with "\\n" and names every tool result;
- tool schemas: Ollama decodes tools into Go structs, so its `json` writes their fields in
  declaration order; `render_prompt` (and this evaluator, which holds them as maps) sorts keys.
  Go's `json` also escapes `<`, `>`, `&` (as `\\u003c`…) and leaves non-ASCII text unescaped, where
  `render_prompt` writes `<>&` as they are and escapes non-ASCII;
- tool-call arguments in past assistant turns are written key by key in sorted order (Go ranges
  over maps sorted), values with Go's compact `json` (nested objects without spaces, no ASCII
  escaping of non-ASCII text, `<>&` escaped); `render_prompt` keeps the model's key order and uses
  `json.dumps(..., separators=(", ", ": "))`. Flat ASCII arguments in sorted order render the same;
- assistant content is rendered as given; `render_prompt` strips surrounding whitespace.
The template assumes Ollama's message fields `ToolName` and `ToolCalls[].Function.{Name,Arguments}`
with `Arguments` a map (older Ollama releases lack `ToolName`; a release whose arguments type cannot
be ranged over would fail on past tool calls). None of this was checked against a running Ollama.
The runner's own Ollama engine sends prompts rendered by `render_prompt` with `raw=True`, so none
of this affects the agent loop; it matters to clients that use Ollama's chat API directly.
"""

from __future__ import annotations

from ..chat_format import END, START, STOP_STRINGS, TOOL_INSTRUCTIONS


def _go_string(text: str) -> str:
    """A Go interpreted string literal for `text`."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _user_turn() -> str:
    return (
        f"{START}user\n"
        "{{ if and $first $pre }}{{ $pre }}\n\n{{ end }}{{ $pend }}"
        f"{END}\n"
        '{{ $first = false }}{{ $has = false }}{{ $pend = "" }}'
    )


# Assembled from pieces so every newline in the output is one we mean; no trim markers are used.
TEMPLATE = (
    "{{ $pre := .System }}"
    "{{ if .Tools }}"
    f"{{{{ $tb := {_go_string(TOOL_INSTRUCTIONS)} }}}}"
    "{{ range $i, $t := .Tools }}"
    '{{ if $i }}{{ $tb = printf "%s\\n" $tb }}{{ end }}'
    '{{ $tb = printf "%s%s" $tb (json $t.Function) }}'
    "{{ end }}"
    '{{ if $pre }}{{ $pre = printf "%s\\n\\n%s" $pre $tb }}{{ else }}{{ $pre = $tb }}{{ end }}'
    "{{ end }}"
    '{{ $first := true }}{{ $has := false }}{{ $pend := "" }}'
    "{{ range .Messages }}"
    '{{ if or (eq .Role "user") (eq .Role "tool") }}'
    "{{ $part := .Content }}"
    '{{ if eq .Role "tool" }}'
    '{{ $part = printf "<tool_result name=\\"%s\\">%s</tool_result>" (or .ToolName "tool") .Content }}'
    "{{ end }}"
    '{{ if $has }}{{ $pend = printf "%s\\n%s" $pend $part }}{{ else }}{{ $pend = $part }}{{ end }}'
    "{{ $has = true }}"
    '{{ else if eq .Role "assistant" }}'
    '{{ if and $first (not $has) $pre }}{{ $has = true }}{{ $pend = "" }}{{ end }}'
    "{{ if $has }}" + _user_turn() + "{{ end }}"
    f"{START}model\n"
    "{{ .Content }}{{ if and .Content .ToolCalls }}\n{{ end }}"
    "{{ range .ToolCalls }}"
    '<tool_call>{"name": {{ json .Function.Name }}, "arguments": {{ "{" }}'
    '{{ $sep := "" }}'
    "{{ range $k, $v := .Function.Arguments }}"
    '{{ $sep }}{{ json $k }}: {{ json $v }}{{ $sep = ", " }}'
    "{{ end }}"
    "}}</tool_call>"
    "{{ end }}"
    f"{END}\n"
    "{{ end }}"
    "{{ end }}"
    "{{ if $has }}" + _user_turn() + "{{ end }}"
    f"{START}model\n"
)


def modelfile_text(gguf_name: str, *, template: str = TEMPLATE) -> str:
    """Modelfile for `ollama create`: the GGUF next to it, the chat template, greedy decoding."""
    if '"""' in template:
        raise ValueError("the template cannot contain a triple quote inside a Modelfile")
    if "/" in gguf_name or not gguf_name.endswith(".gguf"):
        raise ValueError(f"expected a .gguf file name in the same directory, got {gguf_name!r}")
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{template}"""']
    lines += [f'PARAMETER stop "{stop}"' for stop in STOP_STRINGS]
    lines.append("PARAMETER temperature 0")
    return "\n".join(lines) + "\n"
