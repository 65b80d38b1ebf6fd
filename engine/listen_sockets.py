"""The sockets `disparo serve` listens on, bound before the engine starts.

A second `serve` started by mistake on a port that is taken must stop before it
does anything: before it opens the store, loads flows into it, or lets its
dispatcher claim and send due work in the moments until the port turns out to be
taken. So the address is bound first (what `TCPSite` would bind: every address the
host name resolves to), and the server listens on these sockets once the engine runs.
"""

from __future__ import annotations

import errno
import socket

from engine.errors import UserInputError


def bind_sockets(host: str, port: int) -> list[socket.socket]:
    """Bound, not yet listening, sockets for ``host``:``port``; a ``UserInputError``
    saying what to do when the address cannot be had."""
    bound: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.setblocking(False)
    except OSError as exc:  # in use, not an address of this machine, no permission
        for sock in bound:
            sock.close()
        raise UserInputError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; {listen_hint(exc)}"
        ) from None
    return bound


def listen_hint(exc: OSError) -> str:
    """What to do when the server cannot listen, by why it cannot."""
    if exc.errno == errno.EADDRINUSE:
        return "stop what holds the port or choose another (--port, or server.port in the config)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "ports below 1024 need privileges; choose another (--port, or server.port)"
    return (
        "it is not an address of this machine; give one it has, e.g. 127.0.0.1 or 0.0.0.0 "
        "(--host, or server.host in the config)"
    )
