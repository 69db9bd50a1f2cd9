"""Where a server is to listen, checked before it says it is serving."""

from __future__ import annotations

import socket

from core.errors import BotfilterError


def check_listen(host: str, port: int) -> None:
    """Fail in one line, before the banner, where the server could not listen: a port out of
    range (the socket layer took 99999 as 34463 and said so nowhere), taken, or a host that
    does not resolve (each was an internal error after "serving ... on ...")."""
    if not 1 <= port <= 65535:
        raise BotfilterError(f"--port {port}: must be between 1 and 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise BotfilterError(f"--host {host}: cannot be resolved ({exc})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise BotfilterError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
