"""Schemathesis hooks for tests/graphql/test_fuzz.py (loaded through SCHEMATHESIS_HOOKS).
Schemathesis counts every GraphQL error as a server error; ours are the caller's mistakes
(a refused page size, a forbidden role) with codes, so the check here fails only on what is
the server's fault: a 5xx, or an error coded `internal_error`."""

from __future__ import annotations

import json
from typing import Any

import schemathesis


@schemathesis.check
def no_internal_error(ctx: Any, response: Any, case: Any) -> None:
    if response.status_code >= 500:
        raise AssertionError(f"HTTP {response.status_code}: {response.text[:500]}")
    try:
        body = json.loads(response.text)
    except ValueError as error:
        raise AssertionError(f"not JSON: {response.text[:500]}") from error
    codes = [e.get("extensions", {}).get("code") for e in body.get("errors") or []]
    if "internal_error" in codes or None in codes:
        raise AssertionError(f"an error without a code, or internal: {response.text[:500]}")
