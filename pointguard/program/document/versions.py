"""Program versions in PostgreSQL: every save is a new version; an event is evaluated with the
version in force at the event's time (the newest version whose `effective_from` has passed).
A new version never rewrites the past: it may not take effect before (or when) the version in
force now did, unless no version was in force at its time yet. So a period some version governed
keeps it, and the only past a new version may take is one no version governed (what the
webhooks that came before the first program need: they were dead-lettered, not applied).

Versions never change once saved, so parsed documents are cached per (merchant, version,
created_at): the lookup of which version is in force is one small query, and a document is read
and parsed once per process. `created_at` is in the key so that a database rebuilt under a
long-running process cannot serve another database's document.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec

from pointguard.db import PgConnection
from pointguard.errors import ProgramInvalid, ProgramNotFound
from pointguard.program.document.schema import Program
from pointguard.program.document.validate import parse_program

INSERT_VERSION = """
INSERT INTO program_versions (merchant_id, version, effective_from, document)
SELECT $1, coalesce(max(version), 0) + 1, $2, $3::jsonb
FROM program_versions WHERE merchant_id = $1
RETURNING version
"""

SELECT_VERSIONS_IN_FORCE_AT = """
SELECT v.version, v.effective_from, v.created_at
FROM unnest($2::timestamptz[]) WITH ORDINALITY AS t(at, n)
LEFT JOIN LATERAL (
    SELECT version, effective_from, created_at FROM program_versions
    WHERE merchant_id = $1 AND effective_from <= t.at
    ORDER BY effective_from DESC, version DESC LIMIT 1
) v ON true
ORDER BY t.n
"""

SELECT_VERSION_IN_FORCE_NOW = """
SELECT version, effective_from,
       EXISTS (SELECT 1 FROM program_versions WHERE merchant_id = $1 AND effective_from <= $2)
           AS governed
FROM program_versions
WHERE merchant_id = $1 AND effective_from <= now()
ORDER BY effective_from DESC, version DESC LIMIT 1
"""

SELECT_PROGRAM_DOCUMENTS = """
SELECT version, created_at, document::text AS document FROM program_versions
WHERE merchant_id = $1 AND version = ANY($2::int[])
"""

CACHED_DOCUMENTS = 256

SELECT_PROGRAM_VERSIONS = """
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
    """Store `program` (already validated: `parse_program`) as the merchant's next version;
    `ProgramInvalid` if it would take over a past that another version governed."""
    await pg.execute("SELECT pg_advisory_xact_lock(hashtext('program:' || $1))", merchant_id)
    in_force = await pg.fetchrow(SELECT_VERSION_IN_FORCE_NOW, merchant_id, effective_from)
    if (
        in_force is not None
        and in_force["governed"]
        and effective_from <= in_force["effective_from"]
    ):
        since = in_force["effective_from"].isoformat()
        raise ProgramInvalid(
            [
                (
                    "effective_from",
                    f"{effective_from.isoformat()} would rewrite the past: version"
                    f" {in_force['version']} is in force since {since}, so a new version must"
                    " take effect after that (the default is now)",
                )
            ]
        )
    document = msgspec.json.encode(program).decode()
    return int(await pg.fetchval(INSERT_VERSION, merchant_id, effective_from, document))


async def program_in_force(pg: PgConnection, merchant_id: str, at: datetime) -> ProgramVersion:
    return (await programs_in_force(pg, merchant_id, [at]))[0]


async def programs_in_force(
    pg: PgConnection, merchant_id: str, times: Sequence[datetime]
) -> list[ProgramVersion]:
    """The version in force at each of `times`, in their order: one query, plus one more only
    for documents this process has not parsed yet."""
    rows = await pg.fetch(SELECT_VERSIONS_IN_FORCE_AT, merchant_id, list(times))
    for at, row in zip(times, rows, strict=True):
        if row["version"] is None:
            raise ProgramNotFound(
                f"merchant {merchant_id!r} has no program in force at {at.isoformat()}"
            )
    keys = {r["version"]: (merchant_id, r["version"], r["created_at"]) for r in rows}
    programs = {version: _parsed[key] for version, key in keys.items() if key in _parsed}
    missing = sorted(keys.keys() - programs.keys())
    if missing:
        for doc in await pg.fetch(SELECT_PROGRAM_DOCUMENTS, merchant_id, missing):
            programs[doc["version"]] = program = parse_program(msgspec.json.decode(doc["document"]))
            if len(_parsed) >= CACHED_DOCUMENTS:
                _parsed.pop(next(iter(_parsed)))  # the oldest parsed
            _parsed[keys[doc["version"]]] = program
    return [
        ProgramVersion(merchant_id, r["version"], r["effective_from"], programs[r["version"]])
        for r in rows
    ]


async def program_history(pg: PgConnection, merchant_id: str) -> list[tuple[int, datetime]]:
    return [
        (r["version"], r["effective_from"])
        for r in await pg.fetch(SELECT_PROGRAM_VERSIONS, merchant_id)
    ]


# (merchant, version, created_at) -> the parsed document, oldest first.
_parsed: dict[tuple[str, int, datetime], Program] = {}
