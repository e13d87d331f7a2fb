"""Running uvicorn with several processes without its 40 ms stall per request.

uvicorn's multi-process supervisor binds the listening socket itself with `proto` 0; accepted
sockets inherit it, and asyncio turns on TCP_NODELAY only for sockets that say IPPROTO_TCP.
Nagle's algorithm then holds each response's body until the client's delayed ACK, about 40 ms
on Linux, on every keep-alive request (uvicorn issue #3149; measured here: 44 ms per webhook
with two processes against 1 ms with one). So we bind the socket ourselves, as TCP, and hand
it to the same supervisor.
"""

from __future__ import annotations

import socket

import uvicorn
from uvicorn.supervisors import Multiprocess


def tcp_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket whose accepted connections get TCP_NODELAY from asyncio."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def run(config: uvicorn.Config) -> None:
    """Serve `config` (an import string for the app when `config.workers` > 1) until stopped."""
    if config.workers > 1:
        Multiprocess(config, sockets=[tcp_listener(config.host, config.port)]).run()
    else:
        uvicorn.Server(config).run()
