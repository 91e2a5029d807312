"""uvicorn's httptools protocol with a bound on the request head (request line + headers).

httptools buffers a request head of any size before the app sees it (a 10 MB header line is
accepted), so the app's header limit alone does not bound memory. This protocol counts the bytes
of a head that is still incomplete after each read and answers 431 (JSON) and closes the
connection once they pass :data:`MAX_HEAD_BYTES`; a request it cannot parse gets a JSON 400
instead of uvicorn's plain-text one.

With several worker processes (``mimrec serve --workers N``) it also balances keep-alive
connections between them: a worker that receives a request while others are still waiting in it
(a backlog) answers that request with ``Connection: close`` once the connection has carried
:data:`RECYCLE_AFTER` requests. The client's next request opens a new connection, which the
worker that is free to accept it first (an idle one) takes. Without this, a handful of long-lived
client connections split unevenly at connect time (7 to 1 was seen with 8 clients) and stay so:
one worker queues while the other idles. nginx's ``keepalive_requests`` and Envoy's
``max_requests_per_connection`` bound connections the same way, but blindly.
"""

from __future__ import annotations

import json
import os

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
RECYCLE_AFTER = 16  # requests a connection carries before a busy worker may close it
WORKERS_ENV = "MIMREC_WORKERS"  # set by ``mimrec serve`` for its worker processes


def should_recycle(served: int, in_flight: int, workers: int) -> bool:
    """Whether a worker closes a keep-alive connection after its current request: only with
    other workers to take the reconnect, only when this worker has a backlog (requests in flight
    besides this one) and only after :data:`RECYCLE_AFTER` requests on the connection."""
    return workers > 1 and in_flight > 1 and served >= RECYCLE_AFTER


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that refuses request heads over :data:`MAX_HEAD_BYTES`."""

    _in_head = True
    _head_bytes = 0
    _completed = False  # a request ended inside the current read
    _served = 0  # requests started on this connection
    _workers: int | None = None  # worker processes of this service (from WORKERS_ENV)

    def data_received(self, data: bytes) -> None:
        self._completed = False
        super().data_received(data)
        if not self._in_head or self._completed or self.transport.is_closing():
            return  # (a read that ended a request holds its body, not a new head)
        self._head_bytes += len(data)  # the head is still incomplete after this read
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0
        super().on_headers_complete()
        self._served += 1
        if BoundedHttpToolsProtocol._workers is None:
            BoundedHttpToolsProtocol._workers = int(os.environ.get(WORKERS_ENV) or 1)
        if self.cycle is not None and should_recycle(self._served, len(self.server_state.tasks),
                                                     BoundedHttpToolsProtocol._workers):
            self.cycle.keep_alive = False  # answered with Connection: close, then closed

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes, self._completed = True, 0, True

    def _refuse_head(self) -> None:
        self._close_with(431, "Request Header Fields Too Large", "headers",
                         f"request head over the {MAX_HEAD_BYTES:,}-byte limit")

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request it cannot parse, as JSON like every other error."""
        self._close_with(400, "Bad Request", "request", f"not a valid HTTP request ({msg})")

    def _close_with(self, status: int, reason: str, field: str, problem: str) -> None:
        body = json.dumps({"error": "request refused",
                           "detail": [{"field": field, "problem": problem}]}).encode()
        self.transport.write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
        self.transport.close()
