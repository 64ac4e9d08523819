"""Server-side tools. Each is registered by entry point in group `agentloop.tools`; plugins
from other packages register the same way. An entry point names a class (or factory) called
with that tool's options as keyword arguments (none for tools without options)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any

from ..ports import Tool

ENTRY_POINT_GROUP = "agentloop.tools"

logger = logging.getLogger("agent_runner.tools")


def load_tools(enabled: Iterable[str] | None, options: Mapping[str, Mapping[str, Any]]) -> dict[str, Tool]:
    """Instantiate the registered tools (all, or the `enabled` names) keyed by tool name."""
    wanted = set(enabled) if enabled is not None else None
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if wanted is not None and (missing := wanted - set(found)):
        raise ValueError(f"no tool registered under {sorted(missing)} (group {ENTRY_POINT_GROUP!r})")
    tools: dict[str, Tool] = {}
    for name, ep in sorted(found.items()):
        if wanted is not None and name not in wanted:
            continue
        tool = ep.load()(**options.get(name, {}))
        if tool.name != name:
            raise ValueError(f"entry point {name!r} builds a tool named {tool.name!r}")
        tools[name] = tool
    logger.info("server tools: %s", ", ".join(tools) or "none")
    return tools
