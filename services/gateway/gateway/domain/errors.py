"""The gateway's domain errors, mapped to HTTP in `api/errors.py` (the one place that knows status codes)."""

from __future__ import annotations

from .identities import Role


class GatewayError(Exception):
    """Base of the gateway's domain errors."""


class AuthenticationError(GatewayError):
    """The caller could not be identified. `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail or reason


class PermissionDeniedError(GatewayError):
    def __init__(self, required: Role, actual: Role) -> None:
        super().__init__(f"requires role {required.label}, token has {actual.label}")
        self.required = required
        self.actual = actual


class RunNotFoundError(GatewayError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} not found")
        self.run_id = run_id


class RunNotFinishedError(GatewayError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} has not finished yet")
        self.run_id = run_id


class RateLimitedError(GatewayError):
    def __init__(self, limit: str, retry_after_s: int) -> None:
        super().__init__(f"rate limit {limit} exceeded; retry in {retry_after_s}s")
        self.limit = limit
        self.retry_after_s = retry_after_s


class InvalidRequestError(GatewayError):
    """A request broke a rule that is not expressible in its schema; `loc` names the culprit
    as pydantic does: `("tools", 0, "function", "parameters")` (a plain field name also works)."""

    def __init__(self, loc: str | tuple[str | int, ...], message: str) -> None:
        self.loc: tuple[str | int, ...] = (loc,) if isinstance(loc, str) else tuple(loc)
        super().__init__(f"{self.field}: {message}")
        self.message = message

    @property
    def field(self) -> str:
        """The loc as one name: `tools[0].function.parameters`."""
        return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.loc).lstrip(".")


class ApiKeyNotFoundError(GatewayError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"no active API key {key_id}")
        self.key_id = key_id


class ModelNotFoundError(GatewayError):
    def __init__(self, version: str, message: str | None = None) -> None:
        super().__init__(message or f"model version {version} is not registered")
        self.version = version


class CanaryNotFoundError(GatewayError):
    """No canary by that id, or none started yet (404)."""


class CompletionFailedError(GatewayError):
    """A chat completion whose run gave no model turn to return. `kind`: timeout (the wait ended
    first, or the run hit its own time limit), context_length (the prompt does not fit), model
    (the runners do not serve the model asked for), run (the engine failed)."""

    def __init__(self, kind: str, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code or {"timeout": "timeout", "context_length": "context_length_exceeded",
                             "model": "model_not_found"}.get(kind)

    @property
    def openai_type(self) -> str:
        return "invalid_request_error" if self.kind in ("context_length", "model") else "server_error"


class ModelCommandConflictError(GatewayError):
    """A promotion or rollback the registry's current state rules out (nothing was sent)."""


class LogMinerUnavailableError(GatewayError):
    """The log-miner could not be reached or gave no usable answer (its routes answer 503)."""
