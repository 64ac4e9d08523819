"""Why a registry write was refused. Each one means the command can never succeed as given."""

from __future__ import annotations


class RegistryError(Exception):
    """A refused registry write (the registry is left unchanged)."""


class UnknownVersionError(RegistryError):
    def __init__(self, version: str) -> None:
        super().__init__(f"model version {version!r} is not registered")
        self.version = version


class NotPromotableError(RegistryError):
    """The version was never evaluated, was rejected, or has no GGUF of the asked quant."""


class NoPreviousVersionError(RegistryError):
    def __init__(self) -> None:
        super().__init__("nothing to roll back to: no previous production version is recorded")


class VersionConflictError(RegistryError):
    """A version name already registered for another training job."""


class CanaryConflictError(RegistryError):
    """A canary cannot start (one is running, the version is production) or there is none to end."""
