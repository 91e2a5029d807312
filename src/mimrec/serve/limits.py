"""Request size and time limits as a plain ASGI middleware; every refusal is a JSON body.

* headers: more than ``max_header_bytes`` in all (names + values) -> 431;
* body: a declared ``Content-Length`` over ``max_bytes`` is refused before the body is read; a
  chunked body is counted as it arrives and cut off once it passes the limit -> 413;
* time: a body that has not fully arrived ``body_timeout`` seconds after the request started
  (a client trickling bytes) -> 408.
"""

from __future__ import annotations

import asyncio
import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Refused(HTTPException):
    """Raised inside ``receive`` when a body breaks a limit. An HTTPException, so FastAPI's body
    reader passes it on unchanged to the app's handler (any other error there becomes a 400)."""

    def __init__(self, status: int, field: str, problem: str) -> None:
        super().__init__(status, problem)
        self.field = field


async def send_refusal(send: Send, status: int, field: str, problem: str,
                       headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """Send a complete JSON error response in the service's error shape."""
    body = json.dumps({"error": "request refused",
                       "detail": [{"field": field, "problem": problem}]}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class RequestLimits:
    """Refuse oversized headers (431), oversized bodies (413) and slow bodies (408)."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_header_bytes: int,
                 body_timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_header_bytes = max_header_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        if sum(len(k) + len(v) for k, v in headers) > self.max_header_bytes:
            await send_refusal(send, 431, "headers",
                               f"request headers over the {self.max_header_bytes:,}-byte limit")
            return
        declared = dict(headers).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_refusal(send, 413, "body", self._too_large)
            return
        seen = 0
        started = False
        deadline = asyncio.get_running_loop().time() + self.body_timeout
        body_done = False

        async def limited_receive() -> Message:
            nonlocal seen, body_done
            if body_done:  # after the body only a disconnect can come: no deadline
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise Refused(408, "body", f"request body not received within "
                                           f"{self.body_timeout:g} s") from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise Refused(413, "body", self._too_large)
                body_done = not message.get("more_body", False)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except Refused as exc:  # raised outside a FastAPI route's body reader
            if not started:
                await send_refusal(send, exc.status_code, exc.field, exc.detail)

    @property
    def _too_large(self) -> str:
        return f"request body over the {self.max_bytes:,}-byte limit"
