"""Requests to servers that merchants name (their webhook endpoints, their storefronts' JWKS):
bounded in where they may go, in time and in size.

Rules this module enforces:
- Where: a host is resolved when a connection is opened, and refused (`AddressRefused`, before
  any connection is attempted) if any address it resolves to is unspecified, loopback,
  link-local, multicast, private, reserved or otherwise not global (an IPv4-mapped IPv6
  address is judged as its IPv4 address). The connection then goes to an address that was
  checked, never to a second resolution by the operating system, so a DNS answer that changes
  between the check and the connect (rebinding) cannot slip through. Loopback is allowed only
  when `Settings.allow_loopback_endpoints` says so (tests and local trials). No proxy from the
  environment, no redirects, no Unix sockets.
- How long: every request has an overall deadline, from resolving the name to the last byte
  read (`DeadlineExceeded`). httpx's own timeouts are per operation, so a peer sending one
  byte every few seconds never trips them and could hold a request for as long as it likes.
- How much: at most `max_body_bytes` of a response body are read, and the rest never is (the
  connection is closed rather than drained), so a peer cannot choose how much memory we use.
  Bodies are asked for and read without content coding, so a small compressed body cannot
  inflate into a large one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import httpcore
import httpx

from pointguard.config import load_settings
from pointguard.errors import AddressRefused, DeadlineExceeded
from pointguard.plugin.bounded import read_prefix

# Per-operation timeouts (connect, each read, each write, waiting for a pooled connection);
# the deadline each request is given bounds the whole.
OPERATION_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 100
MAX_KEEPALIVE_CONNECTIONS = 20
KEEPALIVE_EXPIRY_S = 30.0
MAX_RESOLVED_ADDRESSES = 16  # a name with more is refused rather than checked at length

# (host, port) -> the IP addresses the host resolves to, in the order to try them.
Resolve = Callable[[str, int], Awaitable[list[str]]]


@dataclass(frozen=True)
class Answer:
    """A peer's answer: its status, and the start of its body (`complete` when the whole body
    fitted in the bytes we were willing to read)."""

    status: int
    body: bytes
    complete: bool


async def resolve_host(host: str, port: int) -> list[str]:
    """The host's IP addresses, as the system resolver gives them (an IP literal is itself)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def refused_kind(address: str, *, allow_loopback: bool) -> str | None:
    """Why requests never go to `address` (the kind of address it is), or None if they may."""
    ip = ipaddress.ip_address(address.partition("%")[0])  # an IPv6 zone names no other host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return None if allow_loopback else "loopback"
    kinds = (
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("non-global", not ip.is_global),
    )
    return next((kind for kind, matches in kinds if matches), None)


def literal_refused_kind(host: str, *, allow_loopback: bool) -> str | None:
    """`refused_kind` for a host written as an IP address or as `localhost`, without asking any
    resolver; None for any other name (it is judged when resolved, at use)."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761: always loopback
        return None if allow_loopback else "loopback"
    try:
        return refused_kind(name, allow_loopback=allow_loopback)
    except ValueError:
        return None


def loopback_allowed() -> bool:
    """The setting, as the environment says now."""
    return load_settings().allow_loopback_endpoints


def redacted(url: str) -> str:
    """`url` without its user info and query, which may hold credentials: fit for logs and for
    messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to resolved addresses that pass the check."""

    def __init__(self, *, allow_loopback: bool, resolve: Resolve) -> None:
        self._allow_loopback = allow_loopback
        self._resolve = resolve
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._checked_addresses(host, port)
        failure: httpcore.ConnectError | None = None
        for address in addresses:  # the checked addresses, not the name: no second lookup
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as error:
                failure = error
        assert failure is not None  # _checked_addresses returns at least one address
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("requests to merchants' servers never go to a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    async def _checked_addresses(self, host: str, port: int) -> list[str]:
        try:
            addresses = await self._resolve(host, port)
        except OSError as error:  # as httpx reports a failed lookup itself
            raise httpcore.ConnectError(f"{host} does not resolve: {error}") from error
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        if len(addresses) > MAX_RESOLVED_ADDRESSES:
            raise AddressRefused(f"{host} resolves to over {MAX_RESOLVED_ADDRESSES} addresses")
        for address in addresses:
            kind = refused_kind(address, allow_loopback=self._allow_loopback)
            if kind is not None:
                where = "is" if address == host else f"resolves to {address},"
                raise AddressRefused(f"{host} {where} a {kind} address")
        return addresses


class _CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool that connects through `_CheckedBackend`.

    httpx 0.29 takes no network backend of its own (encode/httpx#3749 proposes one), so the
    pool it made is replaced by one that uses ours; it keeps the host name for TLS (server
    name and certificate check) and for pooling, and only the TCP connect is redirected."""

    def __init__(self, backend: _CheckedBackend, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


class OutboundClient:
    """An HTTP client for merchants' servers, as the module docstring says. Use it as an async
    context manager; it keeps connections alive between requests while open.

    `allow_loopback` None means as the settings say when the client is made; `resolve`
    replaces the system resolver (tests)."""

    def __init__(
        self,
        *,
        allow_loopback: bool | None = None,
        resolve: Resolve = resolve_host,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        allowed = loopback_allowed() if allow_loopback is None else allow_loopback
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=min(MAX_KEEPALIVE_CONNECTIONS, max_connections),
            keepalive_expiry=KEEPALIVE_EXPIRY_S,
        )
        backend = _CheckedBackend(allow_loopback=allowed, resolve=resolve)
        self._client = httpx.AsyncClient(
            transport=_CheckedTransport(backend, limits),
            timeout=OPERATION_TIMEOUT_S,
            follow_redirects=False,
            trust_env=False,
        )

    async def __aenter__(self) -> OutboundClient:
        await self._client.__aenter__()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._client.__aexit__(kind, error, traceback)

    async def request(
        self,
        method: str,
        url: str,
        *,
        deadline_s: float,
        max_body_bytes: int,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> Answer:
        """Send one request and read at most `max_body_bytes` of the answer's body, all within
        `deadline_s`. Raises `AddressRefused`, `DeadlineExceeded`, or httpx's errors."""
        sent_headers = {"accept-encoding": "identity", **(headers or {})}
        try:
            async with (
                asyncio.timeout(deadline_s),
                self._client.stream(method, url, headers=sent_headers, content=content) as answer,
            ):
                body, complete = await read_prefix(answer.aiter_raw(), max_body_bytes)
                return Answer(answer.status_code, body, complete)
        except TimeoutError as error:
            raise DeadlineExceeded(f"no complete answer within {deadline_s:g} s") from error
