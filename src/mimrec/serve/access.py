"""Who may call what, checked before a request body is read: trusted hosts and bearer tokens.

A plain ASGI middleware, so a refused request costs a header look-up, never a body read or a
JSON parse. Routes and what they need:

* ``POST /v1/items`` (item writes): the write token (``MIMREC_API_TOKEN``); none set -> 403;
* ``GET /v1/users``, ``GET /v1/users/{id}/history``, ``GET /metrics`` (users' behaviour, traffic):
  the read token (``MIMREC_READ_TOKEN``) or the write token; neither set -> 403 (browsing off);
* everything else (scoring, items, health, docs, the page): no token.

Every request must name a trusted host in its ``Host`` header (400 otherwise): a web page that
reaches a loopback service through DNS rebinding sends its own host name, so it is refused.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from starlette.types import ASGIApp, Receive, Scope, Send

from mimrec.serve.limits import send_refusal
from mimrec.validation import shown

TOKEN_ENV = "MIMREC_API_TOKEN"
READ_TOKEN_ENV = "MIMREC_READ_TOKEN"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

Access = Literal["write", "read"]


def route_access(method: str, path: str) -> Access | None:
    """The token a route needs (None: open). Paths are compared without a trailing slash."""
    path = path.rstrip("/") or "/"
    if path == "/v1/items" and method not in ("GET", "HEAD"):
        return "write"
    if path in ("/metrics", "/v1/users") or path.startswith("/v1/users/"):
        return "read"
    return None


def host_name(header: str) -> str:
    """The host of a ``Host`` header, lower-case, without its port (``[::1]:80`` -> ``::1``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    name, sep, port = header.rpartition(":")
    return name if sep and port.isdigit() and ":" not in name else header


@dataclass(frozen=True)
class Tokens:
    """The bearer tokens of a service (None = not set)."""

    write: str | None = None
    read: str | None = None


class AccessGuard:
    """Refuse untrusted hosts (400) and requests without the token their route needs (401/403).

    Args:
        app: the ASGI app to guard.
        tokens: the write and read tokens.
        allowed_hosts: host names a request may name (``*`` allows any).
    """

    def __init__(self, app: ASGIApp, tokens: Tokens, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        self.tokens = tokens
        self.allowed = frozenset(host_name(h) for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        refusal = self._host_refusal(headers.get(b"host"))
        need = route_access(scope["method"], scope["path"])
        if refusal is None and need is not None:
            refusal = self._token_refusal(need, headers.get(b"authorization"))
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, field, problem = refusal
        extra = ((b"www-authenticate", b"Bearer"),) if status == 401 else ()
        await send_refusal(send, status, field, problem, extra)

    def _host_refusal(self, host: bytes | None) -> tuple[int, str, str] | None:
        if "*" in self.allowed:
            return None
        if host is None:
            return 400, "Host", "missing Host header"
        name = host_name(host.decode("latin-1"))
        if name in self.allowed:
            return None
        return 400, "Host", (f"host {shown(name)} is not served here (trusted hosts: "
                             f"{', '.join(sorted(self.allowed))}; see --allowed-host)")

    def _token_refusal(self, need: Access, authorization: bytes | None
                       ) -> tuple[int, str, str] | None:
        accepted = [t for t in (self.tokens.write, self.tokens.read if need == "read" else None)
                    if t]
        if not accepted:
            if need == "write":
                return 403, "Authorization", (f"writes are disabled: the server was started "
                                              f"without {TOKEN_ENV}")
            return 403, "Authorization", (f"browsing users and metrics is off: start the "
                                          f"server with {READ_TOKEN_ENV} (or {TOKEN_ENV})")
        scheme, _, given = (authorization or b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return 401, "Authorization", "missing bearer token"
        given_bytes = given.encode("latin-1")  # the header's bytes as sent
        if not any(hmac.compare_digest(given_bytes, t.encode()) for t in accepted):
            return 401, "Authorization", "wrong token"
        return None
