"""Program versions in PostgreSQL: every save is a new version; an event is evaluated with the
version in force at the event's time (the newest version whose `effective_from` has passed).

Versions never change once saved, so parsed documents are cached per (merchant, version).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import msgspec

from pointguard.db import PgConnection
from pointguard.errors import ProgramNotFound
from pointguard.program.document import Program
from pointguard.program.validation import parse_program

INSERT_VERSION = """
INSERT INTO program_versions (merchant_id, version, effective_from, document)
SELECT $1, coalesce(max(version), 0) + 1, $2, $3::jsonb
FROM program_versions WHERE merchant_id = $1
RETURNING version
"""

IN_FORCE = """
SELECT version, effective_from, document::text AS document FROM program_versions
WHERE merchant_id = $1 AND effective_from <= $2
ORDER BY effective_from DESC, version DESC LIMIT 1
"""

VERSIONS = """
SELECT version, effective_from, created_at FROM program_versions
WHERE merchant_id = $1 ORDER BY version
"""


@dataclass(frozen=True)
class ProgramVersion:
    merchant_id: str
    version: int
    effective_from: datetime
    program: Program


async def save_program(
    pg: PgConnection, merchant_id: str, program: Program, *, effective_from: datetime
) -> int:
    """Store `program` (already validated: `parse_program`) as the merchant's next version."""
    await pg.execute("SELECT pg_advisory_xact_lock(hashtext('program:' || $1))", merchant_id)
    document = msgspec.json.encode(program).decode()
    return int(await pg.fetchval(INSERT_VERSION, merchant_id, effective_from, document))


async def program_in_force(pg: PgConnection, merchant_id: str, at: datetime) -> ProgramVersion:
    row = await pg.fetchrow(IN_FORCE, merchant_id, at)
    if row is None:
        raise ProgramNotFound(f"merchant {merchant_id!r} has no program in force at {at}")
    return ProgramVersion(
        merchant_id,
        row["version"],
        row["effective_from"],
        _parsed(merchant_id, row["version"], row["document"]),
    )


async def program_history(pg: PgConnection, merchant_id: str) -> list[tuple[int, datetime]]:
    return [(r["version"], r["effective_from"]) for r in await pg.fetch(VERSIONS, merchant_id)]


@lru_cache(maxsize=256)
def _parsed(merchant_id: str, version: int, document: str) -> Program:
    return parse_program(msgspec.json.decode(document))
