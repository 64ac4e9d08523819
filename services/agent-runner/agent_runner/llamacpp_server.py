"""`python -m agent_runner.llamacpp_server [llama_cpp.server arguments]`

llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`) with llama.cpp's
extra buffer types set by `ENGINE__USE_EXTRA_BUFTS` (default off). The plain server has no
option for it and dies with SIGILL on its first completion on CPUs whose AMX repacking path
faults; this launcher applies the same model-params default as the embedded engine.
"""

from __future__ import annotations

import os


def main() -> None:
    from llama_cpp.server.__main__ import main as serve

    from .adapters.llamacpp_engine import model_defaults

    use_extra_bufts = os.environ.get("ENGINE__USE_EXTRA_BUFTS", "false").strip().lower() in ("1", "true", "yes")
    with model_defaults(use_extra_bufts=use_extra_bufts):  # held for the server's lifetime: it loads lazily
        serve()


if __name__ == "__main__":
    main()
