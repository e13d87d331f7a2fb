"""Outbound webhook deliveries: one row per outbox event being delivered, and a circuit breaker
per merchant endpoint.

Delivery rows are made lazily by the dispatcher for the outbox rows of a merchant that has an
endpoint, so the ledger's transactions write only the `outbox` row and nothing more.

Revision ID: 0006_deliveries
Revises: 0005_plugin
"""

from pointguard.migrations.script_runner import execute_script

revision = "0006_deliveries"
down_revision = "0005_plugin"
branch_labels = None
depends_on = None

UPGRADE = """
-- status: pending (next try at next_attempt_at; a claimed row's next_attempt_at is pushed out
-- by a lease while it is in flight), delivered, or dead (every attempt failed).
CREATE TABLE outbox_deliveries (
    merchant_id      text        NOT NULL,
    outbox_id        bigint      NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
                                 CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL,
    last_error       text,
    last_status      integer,
    delivered_at     timestamptz,
    PRIMARY KEY (merchant_id, outbox_id),
    FOREIGN KEY (merchant_id, outbox_id) REFERENCES outbox (merchant_id, outbox_id)
        ON DELETE CASCADE
);
CREATE INDEX outbox_deliveries_due ON outbox_deliveries (merchant_id, next_attempt_at)
    WHERE status = 'pending';

-- The endpoint's circuit breaker: open while open_until is in the future; once it has passed,
-- one delivery is tried (half-open), and its success closes the circuit (open_until NULL).
CREATE TABLE outbox_circuits (
    merchant_id           text        NOT NULL,
    consecutive_failures  integer     NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    open_until            timestamptz,
    PRIMARY KEY (merchant_id)
);
"""

DOWNGRADE = "DROP TABLE outbox_circuits, outbox_deliveries;"


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
