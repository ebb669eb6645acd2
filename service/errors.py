"""Every error the API answers with: one body, and one table from domain exceptions to HTTP.

Routes raise what went wrong (`NotReadyError`, `VersionWaitTimeout`, Redis being away, or an
`HTTPException` for bad input); `install` registers one handler per row of `ERRORS`, so a status
code and its Retry-After are decided here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from worker.errors import ClientIdConflict, NotReadyError
from worker.store import UNAVAILABLE


class Overloaded(RuntimeError):
    """As many generations as this replica admits are already waiting or running."""


class VersionWaitTimeout(TimeoutError):
    """A read-your-write query waited its `wait_s` and the memory version it needs was not applied."""


def error_body(message: str, code: int, **extra) -> dict:
    """`detail` for this API's clients, `error` in the shape OpenAI's clients read."""
    kind = "invalid_request_error" if code < 500 else "server_error"
    return {"detail": message, "error": {"message": message, "type": kind, "code": code}, **extra}


@dataclass(frozen=True)
class HttpError:
    status: int
    message: Callable[[Exception], str]
    retry_after_s: int | None = None


ERRORS: dict[type[Exception], HttpError] = {
    NotReadyError: HttpError(503, lambda exc: f"not ready: {exc}", retry_after_s=5),
    VersionWaitTimeout: HttpError(504, str),
    Overloaded: HttpError(503, lambda exc: f"busy: {exc}; retry shortly", retry_after_s=1),
    ClientIdConflict: HttpError(409, lambda exc: f"{exc}; nothing was stored (use a new client_id)"),
    # Nothing was acknowledged: the client may retry the same request (with its client_id).
    **{kind: HttpError(503, lambda exc: f"redis unavailable ({type(exc).__name__}); nothing was stored, "
                                        "retry shortly", retry_after_s=1) for kind in UNAVAILABLE},
}


def _describe(error: dict) -> str:
    loc = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body",)) or "body"
    return f"{loc}: {error.get('msg', 'invalid')}"


def install(app: FastAPI) -> None:
    """Register the handlers: request validation, HTTPException, and every row of ERRORS."""

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        message = "; ".join(_describe(e) for e in errors[:5])
        return JSONResponse(error_body(message, 422, errors=[
            {"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errors]), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message, code = str(exc.detail), exc.status_code
        if isinstance(exc.__cause__, UnicodeDecodeError):  # FastAPI's "error parsing the body" says no more
            bad = exc.__cause__
            message, code = f"body: not valid UTF-8 (byte 0x{bad.object[bad.start]:02x} at offset {bad.start})", 422
        return JSONResponse(error_body(message, code), status_code=code, headers=exc.headers)

    for kind, mapping in ERRORS.items():
        app.add_exception_handler(kind, _handler(mapping))


def _handler(mapping: HttpError):
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        headers = {"Retry-After": str(mapping.retry_after_s)} if mapping.retry_after_s is not None else None
        return JSONResponse(error_body(mapping.message(exc), mapping.status), status_code=mapping.status,
                            headers=headers)

    return handle
