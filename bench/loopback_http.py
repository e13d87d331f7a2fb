"""A keep-alive HTTP/1.1 client for loopback load, shared by `bench/ingest.py` and the
crash-load test. The load generator shares the two cores with the server, so its cost per
request matters: measured here, httpx's load process took ~0.9 of a core to send ~210
requests/s and became the bottleneck, while this client takes ~0.15 of a core at ~600/s."""

from __future__ import annotations

import asyncio
import socket

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class KeepAliveConnection:
    """One connection to 127.0.0.1:`port`, opened on first use and again after an error, a
    `connection: close`, or a change of port (a restarted server)."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self._connected_port = 0
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(
        self, path: str, headers: dict[str, str], body: bytes, *, port: int | None = None
    ) -> int:
        """POST and return the status; the response body is read and dropped."""
        status, _ = await self.post_for_body(path, headers, body, port=port)
        return status

    async def post_for_body(
        self, path: str, headers: dict[str, str], body: bytes, *, port: int | None = None
    ) -> tuple[int, bytes]:
        """POST and return the status and the response body (`content-length` framed)."""
        port = self.port if port is None else port
        if self.writer is not None and self._connected_port != port:
            self.close()
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, port)
            self._connected_port = port
        assert self.reader is not None
        head = f"POST {path} HTTP/1.1\r\nhost: {HOST}:{port}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head += f"content-length: {len(body)}\r\n\r\n"
        try:
            self.writer.write(head.encode() + body)
            response = await self.reader.readuntil(b"\r\n\r\n")
            lines = response.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            answer = await self.reader.readexactly(length)
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, answer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None
