"""Reading a body from the network without letting its sender choose how much memory it takes."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable


async def read_prefix(chunks: AsyncIterable[bytes], limit: int) -> tuple[bytes, bool]:
    """The first `limit` bytes of `chunks`, and whether that was all of them; stops reading as
    soon as it has more than `limit` (a declared length can lie)."""
    parts, size = [], 0
    async for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(parts)[:limit], False
    return b"".join(parts), True


async def read_at_most(
    chunks: AsyncIterable[bytes], limit: int, too_large: Callable[[], Exception]
) -> bytes:
    """The chunks joined, or `too_large()` raised as soon as they pass `limit` bytes (before
    the rest is read)."""
    body, complete = await read_prefix(chunks, limit)
    if not complete:
        raise too_large()
    return body
