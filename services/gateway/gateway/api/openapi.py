"""Every status a route can answer is declared in the OpenAPI document, with its error body
(issue 12: schemathesis checks the document against what the gateway answers).

Statuses that follow from how a route is built are added here, for every route alike: 422 (any
route: a query or path parameter, or a body, that breaks its schema or holds text storage cannot
keep), 401 and 403 from the route's auth guard (`deps.require`), 400 and 413 where there is a body
(bytes that are not JSON; too large). On the
OpenAI-compatible routes the schema errors are 400 and every error is OpenAI's error object
(`errors.is_openai`). What only a route knows (404, 409, 429, 503, ...) it declares itself with
`declared(...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

DESCRIPTIONS = {
    400: "a body that does not parse as JSON; on the OpenAI-compatible routes any invalid request "
         "(OpenAI's invalid_request_error)",
    401: "no valid credential (reason in the body)",
    403: "the credential's role is below the route's",
    404: "no such resource",
    409: "the resource is not in a state that allows this",
    413: "the body is larger than MAX_BODY_BYTES",
    422: "a field breaks the schema or a rule; `loc` names it",
    429: "rate limited; Retry-After says when to come back",
    502: "the run failed on the runner",
    503: "a dependency of this route is unavailable",
    504: "no outcome within the run's timeout",
}

ERROR = {"title": "Error", "type": "object", "properties": {
    "detail": {"description": "what went wrong: a message, or FastAPI's list of {type, loc, msg}"},
    "reason": {"type": "string"}, "required_role": {"type": "string"}, "limit": {"type": "string"},
    "retry_after": {"type": "integer"}}, "required": ["detail"]}
OPENAI_ERROR = {"title": "OpenAIError", "type": "object", "properties": {"error": {
    "type": "object", "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                                     "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}},
    "required": ["message", "type"]}}, "required": ["error"]}


def declared(*statuses: int, openai: bool = False) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route's own error statuses, each with the error body it answers."""
    ref = "#/components/schemas/OpenAIError" if openai else "#/components/schemas/Error"
    return {s: {"description": DESCRIPTIONS[s], "content": {"application/json": {"schema": {"$ref": ref}}}}
            for s in statuses}


def guard_statuses(route: APIRoute) -> set[int]:
    """401/403 from the auth guards among the route's dependencies (`deps.require` marks them)."""
    found: set[int] = set()
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        found |= set(getattr(dep.call, "error_statuses", ()))
        stack.extend(dep.dependencies)
    return found


def install(app: FastAPI, routers: Sequence[APIRouter], *, openai_path: Callable[[str], bool]) -> None:
    """Wrap `app.openapi` so the document carries the statuses above (built once, cached). Every
    operation gets the schema-error status and, with a body, 413; the routes of `routers` also
    what their guards answer."""
    generate = app.openapi
    guarded = {(route.path_format, method.lower()): guard_statuses(route)
               for router in routers for route in router.routes if isinstance(route, APIRoute)
               for method in route.methods}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schema.setdefault("components", {}).setdefault("schemas", {}).update(Error=ERROR, OpenAIError=OPENAI_ERROR)
        for path, operations in schema.get("paths", {}).items():
            is_openai = openai_path(path)
            for method, op in operations.items():
                statuses = guarded.get((path, method), set()) | {400 if is_openai else 422}
                if "requestBody" in op:
                    statuses |= {400, 413}  # 400: bytes that are not JSON at all (FastAPI's parse error)
                responses = op.setdefault("responses", {})
                if is_openai:
                    responses.pop("422", None)  # FastAPI's; the OpenAI routes answer 400 instead
                for status, entry in declared(*sorted(statuses), openai=is_openai).items():
                    responses.setdefault(str(status), entry)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
