"""Reading a body from the network without letting its sender choose how much memory it takes."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable


async def read_at_most(
    chunks: AsyncIterable[bytes], limit: int, too_large: Callable[[], Exception]
) -> bytes:
    """The chunks joined, or `too_large()` raised as soon as they pass `limit` bytes (before
    the rest is read: a declared length can lie)."""
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise too_large()
        parts.append(chunk)
    return b"".join(parts)
