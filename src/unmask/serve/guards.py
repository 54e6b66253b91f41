"""The explorer's guards in front of every route: request size, allowed Host headers, and the
response headers that keep the page to itself.

- :class:`BodyLimit` refuses a body above its cap (413) from its ``Content-Length`` before
  anything is read, or as soon as a streamed body passes the cap.
- :func:`trusted_hosts`: the ``Host:`` names accepted (loopback names and the address the
  server was told to listen on), so that a web page on a DNS-rebinding domain that resolves to
  127.0.0.1 cannot reach the API (Starlette's ``TrustedHostMiddleware`` answers 400).
- :data:`SECURITY_HEADERS`: a Content-Security-Policy that lets the page load nothing from
  elsewhere, and ``nosniff``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["BodyLimit", "is_loopback", "trusted_hosts", "SECURITY_HEADERS", "LOOPBACK_HOSTS"]

#: Host names that always reach this machine only.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")

#: Headers added to every response.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine.

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
        (True, True, False)
    """
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def trusted_hosts(host: str | None = None) -> list[str]:
    """The ``Host:`` names the explorer answers: the loopback names, and ``host`` (the address
    it listens on; an IPv6 address in brackets, as a Host header writes it).

    Example:
        >>> trusted_hosts("::1"), trusted_hosts("192.168.1.5")[-1]
        (['127.0.0.1', 'localhost', '[::1]'], '192.168.1.5')
    """
    names = list(LOOPBACK_HOSTS)
    if host:
        shown = host.lower()
        if ":" in shown and not shown.startswith("["):
            shown = f"[{shown}]"
        if shown not in names:
            names.append(shown)
    return names


class BodyLimit:
    """ASGI middleware: a request body above ``cap(path)`` bytes gets 413, from its
    Content-Length before anything is read, or as soon as a streamed body passes the cap.

    Args:
        app: the application.
        cap: the largest body of a path, bytes.
        max_bytes: the upload limit, for the message of ``/api/images``.
    """

    def __init__(self, app: ASGIApp, cap: Callable[[str], int], max_bytes: int) -> None:
        self.app, self.cap, self.max_bytes = app, cap, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        from fastapi import HTTPException
        from fastapi.responses import JSONResponse

        cap = self.cap(scope["path"])
        detail = (
            f"file: the request is larger than the limit of {self.max_bytes:,} bytes"
            if scope["path"] == "/api/images"
            else f"body: the request is larger than the limit of {cap:,} bytes"
        )
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> MutableMapping[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise HTTPException(413, detail)
            return message

        await self.app(scope, limited, send)
