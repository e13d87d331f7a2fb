"""Indexes for retention (pointguard/plugin/retention.py), so that a purge reads the rows it
deletes and not the tables' history: the inbox's rows in a final state by merchant and arrival,
and the deliveries that reached the merchant's endpoint by merchant and outbox id (outbox ids
are handed out in the order events are written).

Partial B-trees, which cost the hot paths one index entry at a point that writes index entries
already: a webhook enters `inbox_final` when a worker marks it applied (an update that cannot
be HOT, since `status` is in `inbox_pending`'s predicate), so accepting one costs nothing more
(an event type the program ignores enters it when stored), and a delivery enters
`outbox_deliveries_delivered` when the dispatcher records it. Not BRIN on the time columns: a
BRIN range's summary only ever widens, so once purged pages are filled again by new rows,
every range holding them reads as old, and in time each purge scans the whole table (measured
on a 9,524-page table: a purge with nothing to delete read 52 pages at first, then 2,484,
4,916 and 7,220 after one, two and three cycles of deleting a quarter of the rows, vacuuming
and filling the space again); and it cannot narrow a purge to one merchant.

On a large existing database, build them first with `CREATE INDEX CONCURRENTLY` and the same
definitions: this migration creates them only if missing, and a plain build blocks writes to
the table while it runs.

Revision ID: 0010_retention
Revises: 0009_challenge_revocations
"""

from pointguard.migrations.script_runner import execute_script

revision = "0010_retention"
down_revision = "0009_challenge_revocations"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE INDEX IF NOT EXISTS inbox_final ON inbox (merchant_id, received_at)
    WHERE status IN ('applied', 'ignored');
CREATE INDEX IF NOT EXISTS outbox_deliveries_delivered ON outbox_deliveries (merchant_id, outbox_id)
    WHERE status = 'delivered';
"""

DOWNGRADE = "DROP INDEX outbox_deliveries_delivered, inbox_final;"


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
