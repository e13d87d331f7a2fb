"""Dead letters findable without reading the tables' history: partial indexes on the inbox's
and the outbox deliveries' dead rows, for the `/metrics` gauges (counted at every scrape) and
`pointguard inbox dead`. Rows enter them only when they die, so the write path pays nothing.

Revision ID: 0008_dead_letter_indexes
Revises: 0007_sender_keys
"""

from pointguard.migrations.script_runner import execute_script

revision = "0008_dead_letter_indexes"
down_revision = "0007_sender_keys"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE INDEX inbox_dead ON inbox (merchant_id, received_at) WHERE status = 'dead';
CREATE INDEX outbox_deliveries_dead ON outbox_deliveries (merchant_id) WHERE status = 'dead';
"""

DOWNGRADE = "DROP INDEX outbox_deliveries_dead, inbox_dead;"


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
