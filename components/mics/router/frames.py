"""Pre-built frames: one EVENT to many WebSocket connections as the same bytes (`FrameWriter`).

Internals it uses (Autobahn 26.10, Twisted 26.10): the WAMP WebSocket protocol's `_serializer`,
`send_queue`, `send_state` and `_perMessageCompress`, and Twisted's TCP write buffer (`dataBuffer`,
`offset`, `_tempDataBuffer`). A connection that does not look exactly like Autobahn's WebSocket over
Twisted's TCP takes `Router.send` (`write` answers False); tests/unit/test_router.py compares both
paths over real WebSocket connections.
"""

from __future__ import annotations

from typing import Any

import txaio
from autobahn.wamp import message
from autobahn.wamp.websocket import WampWebSocketProtocol
from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol
from twisted.internet import abstract, tcp

txaio.use_twisted()
log = txaio.make_logger()

_OPEN = WebSocketProtocol.STATE_OPEN
_GROUND = WebSocketProtocol.SEND_STATE_GROUND


def _is_plain_websocket(kind: type) -> bool:
    """A WAMP-over-WebSocket protocol whose send path is Autobahn's own (nothing overridden)."""
    return (
        issubclass(kind, WampWebSocketProtocol)
        and issubclass(kind, WebSocketProtocol)
        and kind.send is WampWebSocketProtocol.send
        and kind.sendMessage is WebSocketProtocol.sendMessage
        and kind.sendData is WebSocketProtocol.sendData
    )


def _is_plain_tcp(kind: type) -> bool:
    """A Twisted TCP connection whose write buffer is Twisted's own."""
    return (
        issubclass(kind, tcp.Connection)
        and kind.write is tcp.Connection.write
        and kind.doWrite is abstract.FileDescriptor.doWrite
        and kind.writeSomeData is tcp.Connection.writeSomeData
    )


class FrameWriter:
    """Writes one EVENT to many WebSocket connections as pre-built bytes.

    `Router.send` serializes once per serializer already (Autobahn caches on the message), but then
    builds the WebSocket frame, updates statistics and logs for every receiver, and Twisted queues
    the bytes, asks epoll to watch the socket and writes them on the next turn (two epoll_ctl calls
    and a reactor dispatch per receiver). Here the frame is built once per serializer and written
    with one send() when nothing is queued on that connection (so the order on the wire never
    changes); whatever the socket does not take goes into Twisted's buffer as usual.
    """

    def __init__(self) -> None:
        self._websocket: dict[type, bool] = {}
        self._tcp: dict[type, bool] = {}
        self._warned: set[type] = set()

    def write(self, protocol: Any, event: message.Event, frames: dict[Any, PreparedMessage]) -> bool:
        """Send `event` on this connection; False when it must take the ordinary path. `frames` is
        the event's prepared frames by serializer, shared by all receivers of the event."""
        kind = type(protocol)
        plain = self._websocket.get(kind)
        if plain is None:
            plain = self._websocket[kind] = _is_plain_websocket(kind)
        if not plain:
            return False
        try:
            return self._write(protocol, event, frames)
        except AttributeError as e:  # another Autobahn or Twisted: Router.send knows this connection
            if kind not in self._warned:
                self._warned.add(kind)
                log.warn("pre-built frames not possible for {kind}: {error}", kind=kind.__name__, error=str(e))
            return False

    def _write(self, protocol: Any, event: message.Event, frames: dict[Any, PreparedMessage]) -> bool:
        if protocol.state != _OPEN or protocol.send_state != _GROUND:
            return False
        serializer = protocol._serializer._serializer
        prepared = frames.get(serializer)
        if prepared is None:  # the bytes are cached on the event per serializer: the same as Router.send's
            payload = event.serialize(serializer)
            prepared = frames[serializer] = PreparedMessage(payload, serializer.BINARY, False, False)
        size = len(prepared.payload)
        if 0 < protocol.maxMessagePayloadSize < size or 0 < protocol.autoFragmentSize < size:
            return False  # the ordinary path refuses or fragments it
        transport = protocol.transport
        if protocol._perMessageCompress is not None or protocol.send_queue or not self._direct(transport):
            protocol.sendPreparedMessage(prepared)  # compresses per connection, or queues behind what waits
            return True
        frame = prepared.payloadHybi
        try:
            sent = transport.socket.send(frame)
        except OSError:  # EAGAIN, or an error that Twisted meets again on its own write and closes for
            sent = 0
        if sent < len(frame):
            transport.write(frame[sent:])
        return True

    def _direct(self, transport: Any) -> bool:
        """Whether bytes can go to this transport's socket now without overtaking queued ones."""
        kind = type(transport)
        plain = self._tcp.get(kind)
        if plain is None:
            plain = self._tcp[kind] = _is_plain_tcp(kind)
        return (
            plain
            and transport.connected
            and not transport.disconnecting
            and not transport.TLS
            and not transport._tempDataBuffer
            and transport.offset == len(transport.dataBuffer)
        )
