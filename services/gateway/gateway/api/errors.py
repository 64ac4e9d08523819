"""The one place where domain errors become HTTP statuses."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ..domain import (
    ApiKeyNotFoundError,
    AuthenticationError,
    InvalidRequestError,
    ModelCommandConflictError,
    ModelNotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RunNotFinishedError,
    RunNotFoundError,
)


async def _unauthenticated(_: Request, exc: AuthenticationError) -> JSONResponse:
    return JSONResponse(
        {"detail": exc.detail, "reason": exc.reason},
        status_code=401,
        headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{exc.reason}"'},
    )


async def _forbidden(_: Request, exc: PermissionDeniedError) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "required_role": exc.required.label}, status_code=403)


async def _not_found(_: Request, exc: RunNotFoundError | ModelNotFoundError | ApiKeyNotFoundError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


async def _conflict(_: Request, exc: RunNotFinishedError | ModelCommandConflictError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=409)


async def _rate_limited(_: Request, exc: RateLimitedError) -> JSONResponse:
    return JSONResponse(
        {"detail": str(exc), "limit": exc.limit, "retry_after": exc.retry_after_s},
        status_code=429,
        headers={"Retry-After": str(exc.retry_after_s)},
    )


def validation_detail(exc: InvalidRequestError) -> list[dict]:
    """FastAPI's own 422 shape, so clients parse one format."""
    return [{"type": "value_error", "loc": ["body", *exc.loc], "msg": exc.message}]


async def _invalid(_: Request, exc: InvalidRequestError) -> JSONResponse:
    return JSONResponse({"detail": validation_detail(exc)}, status_code=422)


def install(app: FastAPI) -> None:
    app.add_exception_handler(AuthenticationError, _unauthenticated)
    app.add_exception_handler(PermissionDeniedError, _forbidden)
    app.add_exception_handler(RunNotFoundError, _not_found)
    app.add_exception_handler(RunNotFinishedError, _conflict)
    app.add_exception_handler(ModelNotFoundError, _not_found)
    app.add_exception_handler(ApiKeyNotFoundError, _not_found)
    app.add_exception_handler(ModelCommandConflictError, _conflict)
    app.add_exception_handler(RateLimitedError, _rate_limited)
    app.add_exception_handler(InvalidRequestError, _invalid)
