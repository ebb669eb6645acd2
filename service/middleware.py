"""ASGI middleware: request ids, access logs and request metrics, the request-body size limit, and what
keeps a web page from reaching the API through its visitor's browser (Host names, JSON bodies)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException, status

from service.errors import error_body
from service.metrics import RequestMetrics
from worker.logs import request_id

log = logging.getLogger("smft.access")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestLog:
    """Gives every request an id (the client's X-Request-ID when sane), logs it once, and counts it."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _CLIENT_ID.match(given) else uuid.uuid4().hex[:16]
        token = request_id.set(rid)
        start, code = time.perf_counter(), 500

        async def send_with_id(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = scope.get("route")
            self.metrics.observe(scope["method"], getattr(route, "path", "unmatched"), code, seconds)
            client = scope.get("client") or ("?", 0)
            log.info("%s %s %d", scope["method"], scope["path"], code,
                     extra={"method": scope["method"], "path": scope["path"], "status": code,
                            "ms": round(seconds * 1000, 2), "client": client[0]})
            request_id.reset(token)


class BodyLimit:
    """Refuses bodies over `max_bytes` with 413, by Content-Length or while a chunked body streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _reply(send, 413, f"body: {int(length)} bytes; at most {self.max_bytes} allowed")
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                                    f"body: more than {self.max_bytes} bytes; at most {self.max_bytes} allowed")
            return message

        await self.app(scope, counted, send)


class BrowserGuard:
    """Refuses what a web page could make a browser send to a tokenless API on the visitor's machine.

    - A Host outside `allowed_hosts` (DNS rebinding: evil.example resolving to 127.0.0.1) gets 403;
      an empty list checks nothing (an API with a token, behind names its operator chooses).
    - A body that is not JSON gets 415: a page can post text/plain or a form to any address without
      asking, but sending application/json across origins needs a CORS preflight, which this API
      never grants.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[str]) -> None:
        self.app, self.allowed_hosts = app, allowed_hosts

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = _host_name(headers.get(b"host", b"").decode("latin-1"))
        if self.allowed_hosts and host and host not in self.allowed_hosts:
            await _reply(send, 403, f"host: {host[:64]!r} is not one this API answers to "
                                    "(SMFT_ALLOWED_HOSTS lists them)")
            return
        has_body = headers.get(b"content-length", b"0") not in (b"0", b"") or b"transfer-encoding" in headers
        media = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if has_body and not (media == "application/json" or media.endswith("+json")):
            await _reply(send, 415, f"content-type: {media or 'none'}; request bodies must be application/json")
            return
        await self.app(scope, receive, send)


def _host_name(host: str) -> str:
    """The name in a Host header, without port or IPv6 brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]")[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _reply(send, code: int, message: str) -> None:
    body = json.dumps(error_body(message, code)).encode()
    await send({"type": "http.response.start", "status": code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
