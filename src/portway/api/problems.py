"""The API's single error shape and the handlers that guarantee it.

Every error response is ``{"error": {"code": "...", "message": "...", "details": ...}}``.
Routers raise the families of `portway.errors` or let the store's and the domain's errors
propagate; `STATUS` below is the one place a family becomes an HTTP status. Validation
failures, unknown routes and unexpected exceptions are converted here too, so no response ever
has another shape.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from portway.errors import (
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    NotFound,
    PortwayError,
    ProtocolViolation,
    Unauthorized,
    Unavailable,
)

log = logging.getLogger("portway.api")

STATUS: dict[type[PortwayError], int] = {
    InvalidInput: 422,
    ProtocolViolation: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Gone: 410,
    Conflict: 409,
    Unavailable: 503,
}
"""The status of each family (a member takes its nearest family's). Any other `PortwayError`
(`ClientError`, a bare root) reaching a handler is a bug and answers 500 like any exception."""


class ErrorBody(BaseModel):
    code: str = Field(examples=["tunnel_not_found"])
    message: str = Field(examples=["tunnel not found"])
    details: Any = None


class ErrorDocument(BaseModel):
    error: ErrorBody


def status_of(exc: PortwayError) -> int | None:
    """The HTTP status for `exc`: its nearest family's in `STATUS`, None when it has none."""
    for cls in type(exc).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorDocument, "description": description}
    for status, description in {
        400: "Malformed request",
        401: "Missing or invalid API key",
        404: "No such object in this workspace",
        422: "A field failed validation; `details` names it",
    }.items()
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route may return beyond the common ones."""
    extra = {
        403: "Not allowed for this API key",
        409: "Conflicts with an existing object",
        503: "A dependency is unavailable",
    }
    out = dict(ERROR_RESPONSES)
    for status in statuses:
        out[status] = {"model": ErrorDocument, "description": extra.get(status, "Error")}
    return out


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=status, headers=headers)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "request")


def _message(error: dict[str, Any]) -> str:
    # Our own validators raise ValueError with a sentence meant for users; pydantic would
    # prefix it with "Value error, ".
    cause = (error.get("ctx") or {}).get("error")
    if error.get("type") == "value_error" and cause is not None:
        return str(cause)
    return str(error.get("msg", ""))


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {
            "field": _field_path(tuple(e.get("loc", ()))),
            "message": _message(e),
            "type": e.get("type", ""),
        }
        for e in exc.errors()
    ]


async def _on_error(_request: Request, exc: Exception) -> JSONResponse:
    """Any `PortwayError`: its family's status, its code, its message ("field: message" when it
    names a field) and its details."""
    assert isinstance(exc, PortwayError)
    status = status_of(exc)
    if status is None:
        raise exc  # no family the API answers for: the unexpected-error path logs it, 500
    message = exc.message if exc.field is None else f"{exc.field}: {exc.message}"
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return error_response(status, exc.code, message, exc.details, headers)


async def _on_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = _validation_details(exc)
    if any(d["type"] == "json_invalid" for d in details):
        return error_response(400, "invalid_json", "request body is not valid JSON", details)
    first = details[0] if details else {"field": "request", "message": "invalid"}
    message = f"{first['field']}: {first['message']}"
    return error_response(422, "validation_failed", message, details)


async def _on_http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
    message = {404: "no such endpoint", 405: "method not allowed on this endpoint"}.get(
        exc.status_code, str(exc.detail)
    )
    headers = dict(exc.headers) if exc.headers else None
    return error_response(
        exc.status_code, codes.get(exc.status_code, "http_error"), message, headers=headers
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"path": request.url.path, "method": request.method})
    return error_response(500, "internal_error", "the hub failed to handle this request")


def install(app: FastAPI) -> None:
    """Register the handlers on `app`; called once by `portway.api.app.create_app`."""
    app.add_exception_handler(PortwayError, _on_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)
