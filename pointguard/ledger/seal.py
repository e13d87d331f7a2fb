"""Tamper evidence: each merchant's entries sealed, in order, into a SHA-256 hash chain.

The sealer runs off the write path (a background task, or `pointguard ledger seal`): writers
never wait on it. It stamps committed, unsealed entries with the next sequence number and
`sha256(previous hash + canonical entry)`, and folds their system-account postings into the
checkpoint balances that `balances.system_balances` starts from. An entry that commits late is
simply sealed in a later round; the chain's order is the order of sealing.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from pointguard.db import PgConnection

GENESIS_HASH = bytes(32)
MAX_SEAL_BATCH = 5000

# `{page}` picks a page of entries by index first; only that page is joined to its postings.
SELECT_CANONICAL_ENTRIES = """
SELECT e.entry_id, e.seal_seq, e.seal_hash, e.idempotency_key, e.kind, e.description, e.source,
       e.metadata, e.reverses, e.settles, e.created_at,
       array_agg(p.account_id ORDER BY p.account_id) AS account_ids,
       array_agg(p.amount_points ORDER BY p.account_id) AS amounts
FROM (
    SELECT entry_id, seal_seq, seal_hash, idempotency_key, kind, description, source,
           metadata::text AS metadata, reverses, settles, created_at
    FROM ledger_entries WHERE merchant_id = $1 AND {page}
) e
JOIN ledger_postings p ON p.merchant_id = $1 AND p.entry_id = e.entry_id
GROUP BY e.entry_id, e.seal_seq, e.seal_hash, e.idempotency_key, e.kind, e.description, e.source,
         e.metadata, e.reverses, e.settles, e.created_at
"""

SELECT_UNSEALED_ENTRIES = (
    SELECT_CANONICAL_ENTRIES.format(page="seal_seq IS NULL ORDER BY entry_id LIMIT $2")
    + "ORDER BY e.entry_id"
)

SELECT_ENTRIES_SEALED_AFTER = (
    SELECT_CANONICAL_ENTRIES.format(page="seal_seq > $2 ORDER BY seal_seq LIMIT $3")
    + "ORDER BY e.seal_seq"
)

LOCK_SEAL_HEAD = """
INSERT INTO ledger_seal_heads AS h (merchant_id, last_seq, last_hash) VALUES ($1, 0, $2)
ON CONFLICT (merchant_id) DO UPDATE SET last_seq = h.last_seq
RETURNING last_seq, last_hash
"""

SET_ENTRY_SEALS = """
UPDATE ledger_entries e SET seal_seq = s.seq, seal_hash = s.hash
FROM unnest($2::bigint[], $3::bigint[], $4::bytea[]) AS s(entry_id, seq, hash)
WHERE e.merchant_id = $1 AND e.entry_id = s.entry_id
"""

ADD_TO_SYSTEM_BALANCES = """
INSERT INTO ledger_system_balances AS b (merchant_id, account_id, sealed_balance_points)
SELECT $1, account_id, sum(points) FROM unnest($2::bigint[], $3::bigint[]) AS t(account_id, points)
GROUP BY account_id
ON CONFLICT (merchant_id, account_id)
DO UPDATE SET sealed_balance_points = b.sealed_balance_points + EXCLUDED.sealed_balance_points
"""

MOVE_SEAL_HEAD = "UPDATE ledger_seal_heads SET last_seq = $2, last_hash = $3 WHERE merchant_id = $1"


def chain_hash(previous: bytes, merchant_id: str, row: Any) -> bytes:
    """The next link: sha256 over the previous hash and the entry in canonical form."""
    canonical = msgspec.json.encode(
        [
            merchant_id,
            row["entry_id"],
            row["idempotency_key"],
            row["kind"],
            row["description"],
            row["source"],
            row["metadata"],
            row["reverses"],
            row["settles"],
            row["created_at"].isoformat(),
            list(row["account_ids"]),
            list(row["amounts"]),
        ]
    )
    return hashlib.sha256(previous + canonical).digest()


async def seal(pg: PgConnection, merchant_id: str, *, limit: int = MAX_SEAL_BATCH) -> int:
    """Seal up to `limit` committed entries of one merchant; returns how many. Call it in a
    transaction; two sealers of one merchant take turns on its chain head."""
    head = await pg.fetchrow(LOCK_SEAL_HEAD, merchant_id, GENESIS_HASH)
    rows = await pg.fetch(SELECT_UNSEALED_ENTRIES, merchant_id, limit)
    if not rows:
        return 0
    seq, digest = head["last_seq"], bytes(head["last_hash"])
    ids, seqs, hashes, system_ids, system_points = [], [], [], [], []
    for row in rows:
        seq += 1
        digest = chain_hash(digest, merchant_id, row)
        ids.append(row["entry_id"])
        seqs.append(seq)
        hashes.append(digest)
        for account_id, amount in zip(row["account_ids"], row["amounts"], strict=True):
            if account_id < 0:
                system_ids.append(account_id)
                system_points.append(amount)
    await pg.execute(SET_ENTRY_SEALS, merchant_id, ids, seqs, hashes)
    if system_ids:
        await pg.execute(ADD_TO_SYSTEM_BALANCES, merchant_id, system_ids, system_points)
    await pg.execute(MOVE_SEAL_HEAD, merchant_id, seq, digest)
    return len(rows)
