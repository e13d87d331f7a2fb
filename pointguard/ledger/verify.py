"""`ledger verify`: recompute everything the ledger promises and report every break.

Checked, per merchant, in one consistent snapshot: the hash chain (links and sequence), that
every entry has two or more postings summing to zero, that postings name real entries and
accounts, that
stored member balances equal the sum of their postings, that the sealer's system checkpoints
equal the sealed postings, and that lots and open holds add up to the balances they back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pointguard.db import PgConnection
from pointguard.ledger.seal import GENESIS_HASH, SELECT_ENTRIES_SEALED_AFTER, chain_hash

MAX_REPORTED_PER_CHECK = 20
CHAIN_PAGE = 5000

CHECKS: dict[str, str] = {
    "entry does not balance or has fewer than 2 postings": """
        SELECT format('entry %s: %s postings summing to %s', e.entry_id, count(p.entry_id),
                      coalesce(sum(p.amount_points), 0))
        FROM ledger_entries e
        LEFT JOIN ledger_postings p ON p.merchant_id = e.merchant_id AND p.entry_id = e.entry_id
        WHERE e.merchant_id = $1 GROUP BY e.entry_id
        HAVING count(p.entry_id) < 2 OR coalesce(sum(p.amount_points), 0) <> 0
        ORDER BY e.entry_id LIMIT $2""",
    "posting of an unknown entry": """
        SELECT format('posting of entry %s on account %s', p.entry_id, p.account_id)
        FROM ledger_postings p
        WHERE p.merchant_id = $1 AND NOT EXISTS (
            SELECT 1 FROM ledger_entries e
            WHERE e.merchant_id = p.merchant_id AND e.entry_id = p.entry_id)
        LIMIT $2""",
    "posting on an unknown account": """
        SELECT format('entry %s posts %s on account %s', p.entry_id, p.amount_points, p.account_id)
        FROM ledger_postings p
        WHERE p.merchant_id = $1 AND NOT (p.account_id BETWEEN -4 AND -1)
          AND p.account_id NOT IN (SELECT account_id FROM ledger_accounts WHERE merchant_id = $1)
        LIMIT $2""",
    "stored balance differs from its postings": """
        SELECT format('member %s %s: stored %s, postings say %s', a.member_id, a.kind,
                      a.balance_points, coalesce(s.total, 0))
        FROM ledger_accounts a
        LEFT JOIN (SELECT account_id, sum(amount_points) AS total FROM ledger_postings
                   WHERE merchant_id = $1 AND account_id > 0 GROUP BY account_id) s
               ON s.account_id = a.account_id
        WHERE a.merchant_id = $1 AND a.balance_points <> coalesce(s.total, 0)
        ORDER BY a.account_id LIMIT $2""",
    "system checkpoint differs from sealed postings": """
        SELECT format('system account %s: checkpoint %s, sealed postings say %s',
                      coalesce(b.account_id, s.account_id), coalesce(b.sealed_balance_points, 0),
                      coalesce(s.total, 0))
        FROM (SELECT * FROM ledger_system_balances WHERE merchant_id = $1) b
        FULL JOIN (SELECT p.account_id, sum(p.amount_points) AS total
                   FROM ledger_postings p JOIN ledger_entries e
                     ON e.merchant_id = p.merchant_id AND e.entry_id = p.entry_id
                   WHERE p.merchant_id = $1 AND p.account_id < 0 AND e.seal_seq IS NOT NULL
                   GROUP BY p.account_id) s ON s.account_id = b.account_id
        WHERE coalesce(b.sealed_balance_points, 0) <> coalesce(s.total, 0)
        LIMIT $2""",
    "lots or holds differ from balances": """
        WITH bal AS (
            SELECT member_id,
                   sum(balance_points) FILTER (WHERE kind = 'available') AS available,
                   sum(balance_points) FILTER (WHERE kind = 'pending') AS pending,
                   sum(balance_points) FILTER (WHERE kind = 'reserved') AS reserved
            FROM ledger_accounts WHERE merchant_id = $1 GROUP BY member_id
        ), lots AS (
            SELECT member_id, sum(available_points) AS available, sum(pending_points) AS pending
            FROM ledger_lots WHERE merchant_id = $1 GROUP BY member_id
        ), holds AS (
            SELECT member_id, sum(amount_points) AS reserved
            FROM ledger_holds WHERE merchant_id = $1 AND status = 'open' GROUP BY member_id
        )
        SELECT format('member %s: available %s vs lots %s, pending %s vs lots %s,'
                      ' reserved %s vs open holds %s', member_id,
                      coalesce(bal.available, 0), coalesce(lots.available, 0),
                      coalesce(bal.pending, 0), coalesce(lots.pending, 0),
                      coalesce(bal.reserved, 0), coalesce(holds.reserved, 0))
        FROM bal FULL JOIN lots USING (member_id) FULL JOIN holds USING (member_id)
        WHERE greatest(coalesce(bal.available, 0), 0) <> coalesce(lots.available, 0)
           OR coalesce(bal.pending, 0) <> coalesce(lots.pending, 0)
           OR coalesce(bal.reserved, 0) <> coalesce(holds.reserved, 0)
        ORDER BY member_id LIMIT $2""",
    "open hold not backed by its lots": """
        SELECT format('hold %s: %s points, lots give %s', h.hold_id, h.amount_points,
                      coalesce(x.points, 0))
        FROM ledger_holds h
        LEFT JOIN (SELECT hold_id, sum(points) AS points FROM ledger_hold_lots
                   WHERE merchant_id = $1 GROUP BY hold_id) x ON x.hold_id = h.hold_id
        WHERE h.merchant_id = $1 AND h.status = 'open' AND h.amount_points <> coalesce(x.points, 0)
        LIMIT $2""",
}

SELECT_SEAL_HEAD = "SELECT last_seq, last_hash FROM ledger_seal_heads WHERE merchant_id = $1"


@dataclass
class VerifyReport:
    merchant_id: str
    entries_sealed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify_merchant(pg: PgConnection, merchant_id: str) -> VerifyReport:
    """Verify one merchant. Opens its own read-only REPEATABLE READ transaction on `pg`."""
    report = VerifyReport(merchant_id)
    async with pg.transaction(isolation="repeatable_read", readonly=True):
        for name, sql in CHECKS.items():
            for row in await pg.fetch(sql, merchant_id, MAX_REPORTED_PER_CHECK):
                report.problems.append(f"{name}: {row[0]}")
        await _verify_chain(pg, report)
    return report


async def _verify_chain(pg: PgConnection, report: VerifyReport) -> None:
    merchant_id = report.merchant_id
    seq, digest = 0, GENESIS_HASH
    while True:
        rows = await pg.fetch(SELECT_ENTRIES_SEALED_AFTER, merchant_id, seq, CHAIN_PAGE)
        for row in rows:
            if row["seal_seq"] != seq + 1:
                report.problems.append(f"hash chain: after seal {seq} comes seal {row['seal_seq']}")
            digest = chain_hash(digest, merchant_id, row)
            if digest != bytes(row["seal_hash"]):
                report.problems.append(
                    f"hash chain: entry {row['entry_id']} (seal {row['seal_seq']}) does not match"
                    " its seal: it or an earlier entry was changed"
                )
                digest = bytes(row["seal_hash"])  # report each break once, then go on
            seq = row["seal_seq"]
        if len(rows) < CHAIN_PAGE:
            break
    report.entries_sealed = seq
    head = await pg.fetchrow(SELECT_SEAL_HEAD, merchant_id)
    if head is not None and (head["last_seq"], bytes(head["last_hash"])) != (seq, digest):
        report.problems.append(
            f"hash chain: head says seal {head['last_seq']}, entries end at seal {seq}"
        )
    elif head is None and seq:
        report.problems.append("hash chain: entries are sealed but the chain head is missing")
