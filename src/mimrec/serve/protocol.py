"""uvicorn's httptools protocol with a bound on the request head (request line + headers).

httptools buffers a request head of any size before the app sees it (a 10 MB header line is
accepted), so the app's header limit alone does not bound memory. This protocol counts the bytes
of a head that is still incomplete after each read and answers 431 (JSON) and closes the
connection once they pass :data:`MAX_HEAD_BYTES`.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that refuses request heads over :data:`MAX_HEAD_BYTES`."""

    _in_head = True
    _head_bytes = 0
    _completed = False  # a request ended inside the current read

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

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes, self._completed = True, 0, True

    def _refuse_head(self) -> None:
        body = json.dumps({"error": "request refused", "detail": [{
            "field": "headers",
            "problem": f"request head over the {MAX_HEAD_BYTES:,}-byte limit"}]}).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
        self.transport.close()
