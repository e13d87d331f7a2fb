"""Persisted queries, in Apollo's automatic protocol: a client may send the SHA-256 of a query
in place of its text (`extensions.persistedQuery {version: 1, sha256Hash}`). The first time, we
answer `PersistedQueryNotFound` and the client sends the text with the hash once; after that
the hash alone will do. A storefront's checkout then sends a few dozen bytes for its query
instead of a few KiB. Kept in memory per process (a restart or another worker asks for the
text once more), bounded by `MAX_PERSISTED`."""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from typing import Any

from pointguard.errors import QueryRefused

MAX_PERSISTED = 10_000  # the least recently used are forgotten (the client sends them again)
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class PersistedQueryNotFound(QueryRefused):
    """Apollo's clients look for this exact message, then send the query's text."""

    code = "persisted_query_not_found"

    def __init__(self) -> None:
        super().__init__("PersistedQueryNotFound")


class PersistedQueries:
    def __init__(self, max_entries: int = MAX_PERSISTED) -> None:
        self._max_entries = max_entries
        self._queries: OrderedDict[str, str] = OrderedDict()

    def resolve(self, body: bytes) -> bytes:
        """The request body with the query's text in it. A body without a persisted query is
        returned as it is, unparsed; `PersistedQueryNotFound` for a hash not seen yet,
        `QueryRefused` for a hash that is not the text's."""
        if b"persistedQuery" not in body:
            return body
        try:
            request = json.loads(body)
        except ValueError:
            return body  # Strawberry answers a body that is not JSON
        persisted = _persisted(request)
        if persisted is None:
            return body
        query = request.get("query")
        if query is None:
            stored = self._queries.get(persisted)
            if stored is None:
                raise PersistedQueryNotFound()
            self._queries.move_to_end(persisted)
            return json.dumps({**request, "query": stored}).encode()
        if not isinstance(query, str) or hashlib.sha256(query.encode()).hexdigest() != persisted:
            raise QueryRefused("persistedQuery.sha256Hash is not the SHA-256 of the query sent")
        self._queries[persisted] = query
        if len(self._queries) > self._max_entries:
            self._queries.popitem(last=False)
        return body


def _persisted(request: Any) -> str | None:
    """The hash a request names, or None if it names none; `QueryRefused` if malformed."""
    if not isinstance(request, dict):
        return None
    extensions = request.get("extensions")
    if not isinstance(extensions, dict) or "persistedQuery" not in extensions:
        return None
    persisted = extensions["persistedQuery"]
    if (
        not isinstance(persisted, dict)
        or persisted.get("version") != 1
        or not isinstance(persisted.get("sha256Hash"), str)
        or not SHA256_HEX.fullmatch(persisted["sha256Hash"])
    ):
        raise QueryRefused(
            "extensions.persistedQuery must be {version: 1, sha256Hash: <64 hex digits>}"
        )
    return str(persisted["sha256Hash"])
