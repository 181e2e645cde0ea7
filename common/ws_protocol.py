"""The WebSocket protocol the HTTP services run under uvicorn: uvicorn's websockets-sansio one, plus an
answer to handshakes it cannot parse, and a keepalive whose timeout the application hears about.

A handshake whose request line or headers are too long (e.g. a 10 kB ``?token=``) or not HTTP at all makes
the websockets parser give up before any event reaches uvicorn, which then never writes the rejection the
parser prepared: the client waits until it times out, and the half-open connection makes the server's
shutdown fail. Here such a handshake is answered at once with a JSON error and the right HTTP status.
"""

from __future__ import annotations

import logging

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidMessage

from common.schemas import ErrorMessage

log = logging.getLogger(__name__)


def _status(exc: BaseException) -> tuple[int, str, str]:
    name = type(exc).__name__
    if name == "RequestLineTooLong":
        return 414, "URI Too Long", "the URL is too long"
    if name in ("HeaderLineTooLong", "TooManyHeaders"):
        return 431, "Request Header Fields Too Large", "the request headers are too large"
    if isinstance(exc, InvalidMessage):
        return 400, "Bad Request", "the WebSocket handshake is not a valid HTTP request"
    return 400, "Bad Request", f"the WebSocket handshake was refused: {exc}"


def handshake_refusal(exc: BaseException) -> bytes:
    """A complete HTTP/1.1 response carrying an :class:`ErrorMessage` with the code ``bad_handshake``."""
    status, phrase, message = _status(exc)
    body = ErrorMessage(code="bad_handshake", message=message).model_dump_json().encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """Pass as ``uvicorn.Config(ws=WebSocketProtocol)``.

    A peer that leaves a keepalive ping unanswered for ``ws_ping_timeout`` (it reads nothing: a pong can
    only follow what was sent before the ping) is closed with :attr:`keepalive_close`, and the application
    receives a disconnect with that code and reason, so it can tell this from a peer that left.
    """

    keepalive_close: tuple[int, str] = (1011, "keepalive ping timeout")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        failed = self.conn.handshake_exc
        if failed is not None and not self.handshake_initiated and not self.close_sent:
            log.info("refused an unparseable WebSocket handshake: %s", failed)
            self.conn.data_to_send()  # what the parser prepared, replaced by a JSON answer
            self.transport.write(handshake_refusal(failed))
            self.handshake_complete = True
            self.close_sent = True
            self.transport.close()

    def keepalive_timeout(self) -> None:
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.close_sent or self.transport.is_closing():
            return
        code, reason = self.keepalive_close
        log.debug("%s: no answer to a ping, closing with %d", self.client, code)
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.conn.fail(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.close()
