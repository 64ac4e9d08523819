"""The one place where domain errors become HTTP statuses.

On the OpenAI-compatible routes (`/v1/chat/...`, `/v1/models`) the same statuses come in OpenAI's
error object, `{"error": {"message", "type", "param", "code"}}`, and a request that fails its
schema is a 400 there (OpenAI's status), not FastAPI's 422.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from ..domain import (
    ApiKeyNotFoundError,
    AuthenticationError,
    CompletionFailedError,
    InvalidRequestError,
    CanaryNotFoundError,
    ModelCommandConflictError,
    ModelNotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RunNotFinishedError,
    RunNotFoundError,
    UnsupportedValueError,
)
from ..domain.screening import InjectionBlockedError


def openai_path(path: str) -> bool:
    """The OpenAI-compatible routes: their errors come in OpenAI's error object."""
    return path.startswith("/v1/chat/") or path == "/v1/models" or path.startswith("/v1/models/")


def is_openai(request: Request) -> bool:
    return openai_path(request.url.path)


def openai_error(status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type, "param": param, "code": code}},
                        status_code=status, headers=headers)


async def _unauthenticated(request: Request, exc: AuthenticationError) -> JSONResponse:
    headers = {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{exc.reason}"'}
    if is_openai(request):
        code = "invalid_api_key" if exc.reason.endswith("api_key") else exc.reason
        return openai_error(401, exc.detail, code=code, headers=headers)
    return JSONResponse({"detail": exc.detail, "reason": exc.reason}, status_code=401, headers=headers)


async def _forbidden(request: Request, exc: PermissionDeniedError) -> JSONResponse:
    if is_openai(request):
        return openai_error(403, str(exc), type="permission_error", code="insufficient_role")
    return JSONResponse({"detail": str(exc), "required_role": exc.required.label}, status_code=403)


async def _not_found(request: Request,
                     exc: RunNotFoundError | ModelNotFoundError | ApiKeyNotFoundError | CanaryNotFoundError,
                     ) -> JSONResponse:
    if is_openai(request):
        model = isinstance(exc, ModelNotFoundError)
        return openai_error(404, str(exc), param="model" if model else None,
                            code="model_not_found" if model else "not_found")
    return JSONResponse({"detail": str(exc)}, status_code=404)


async def _conflict(_: Request, exc: RunNotFinishedError | ModelCommandConflictError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=409)


async def _rate_limited(request: Request, exc: RateLimitedError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after_s)}
    if is_openai(request):
        return openai_error(429, str(exc), type="requests", code="rate_limit_exceeded", headers=headers)
    return JSONResponse({"detail": str(exc), "limit": exc.limit, "retry_after": exc.retry_after_s},
                        status_code=429, headers=headers)


def validation_detail(exc: InvalidRequestError) -> list[dict]:
    """FastAPI's own 422 shape, so clients parse one format (a screening refusal adds its `ctx`:
    category, source, rules, score)."""
    if isinstance(exc, InjectionBlockedError):
        return [{"type": "prompt_injection", "loc": ["body", *exc.loc], "msg": exc.message, "ctx": exc.ctx}]
    return [{"type": "value_error", "loc": ["body", *exc.loc], "msg": exc.message}]


async def _invalid(request: Request, exc: InvalidRequestError) -> JSONResponse:
    if is_openai(request):
        code = "unsupported_value" if isinstance(exc, UnsupportedValueError) else "invalid_value"
        if isinstance(exc, InjectionBlockedError):
            code = "prompt_injection"
        elif exc.loc[:1] == ("options",):  # a run's rule, named as the completion's parameter (`max_tokens`)
            exc = InvalidRequestError(exc.loc[1:], exc.message)
        return openai_error(400, str(exc), param=exc.field, code=code)
    return JSONResponse({"detail": validation_detail(exc)}, status_code=422)


def _param(loc: tuple[Any, ...]) -> str:
    parts = loc[1:] if loc[:1] == ("body",) else loc
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


async def _schema(request: Request, exc: RequestValidationError) -> Response:
    if not is_openai(request):
        return await request_validation_exception_handler(request, exc)
    first = exc.errors()[0]
    param = _param(tuple(first.get("loc", ())))
    if first.get("type") == "extra_forbidden":
        return openai_error(400, f"Unrecognized request argument supplied: {param}", param=param,
                            code="unknown_parameter")
    message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
    return openai_error(400, message, param=param or None, code="invalid_value")


async def _completion_failed(_: Request, exc: CompletionFailedError) -> JSONResponse:
    status = {"timeout": 504, "context_length": 400, "model": 404}.get(exc.kind, 502)
    return openai_error(status, str(exc), type=exc.openai_type, code=exc.code,
                        param="messages" if exc.kind == "context_length" else "model" if exc.kind == "model" else None)


def install(app: FastAPI) -> None:
    app.add_exception_handler(AuthenticationError, _unauthenticated)
    app.add_exception_handler(PermissionDeniedError, _forbidden)
    app.add_exception_handler(RunNotFoundError, _not_found)
    app.add_exception_handler(RunNotFinishedError, _conflict)
    app.add_exception_handler(ModelNotFoundError, _not_found)
    app.add_exception_handler(CanaryNotFoundError, _not_found)
    app.add_exception_handler(ApiKeyNotFoundError, _not_found)
    app.add_exception_handler(ModelCommandConflictError, _conflict)
    app.add_exception_handler(RateLimitedError, _rate_limited)
    app.add_exception_handler(InvalidRequestError, _invalid)
    app.add_exception_handler(RequestValidationError, _schema)
    app.add_exception_handler(CompletionFailedError, _completion_failed)
