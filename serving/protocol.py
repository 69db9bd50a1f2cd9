"""Time limits on the connection itself: a client that never finishes its request headers.

uvicorn (0.5x) closes a keep-alive connection that stays idle after a response, but arms no
timer before the first request or once a request's first bytes have arrived: a client that
opens connections and sends nothing, or half a request line, holds each of them (and a slot of
the worker) forever. :class:`HeaderTimeoutProtocol` is uvicorn's httptools protocol with one
timer more: from the moment a connection opens, or a new request on it begins, its headers
must be complete within ``header_timeout_s``; otherwise the server answers 408 (when no
response is under way) and closes the connection. A slow body is :func:`serving.api.read_body`'s
to time out (408), since the application reads it.

BentoML builds each worker's uvicorn configuration itself, with the default ``http="auto"``;
:func:`install` points that name at this class before the worker loads its configuration.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn import config as uvicorn_config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("botfilter.serving")

TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 42\r\nconnection: close\r\n\r\n"
    b"the request headers did not arrive in time"
)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose headers do not arrive in time."""

    header_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    # asyncio.Protocol takes any BaseTransport; uvicorn's protocol (which we extend) narrows it
    # to Transport, and so must we.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(TIMEOUT_RESPONSE)
        self.transport.close()


def install(header_timeout_s: float) -> None:
    """Make uvicorn's ``auto`` and ``httptools`` protocols :class:`HeaderTimeoutProtocol`
    with ``header_timeout_s``, for every server configuration loaded afterwards."""
    HeaderTimeoutProtocol.header_timeout_s = header_timeout_s
    name = f"{__name__}:{HeaderTimeoutProtocol.__name__}"
    uvicorn_config.HTTP_PROTOCOLS["auto"] = name
    uvicorn_config.HTTP_PROTOCOLS["httptools"] = name
