"""Merchants, their credentials (encrypted at rest), and the exactly-once inbox.

Revision ID: 0005_plugin
Revises: 0004_chance
"""

from pointguard.migrations.script_runner import execute_script

revision = "0005_plugin"
down_revision = "0004_chance"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE merchants (
    merchant_id   text        NOT NULL,
    name          text        NOT NULL,
    endpoint_url  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id)
);

-- kind: inbound_secret (whsec_, AES-GCM encrypted; up to two active during a rollover),
-- inbound_public_key (Ed25519, for v1a senders), outbound_private_key (Ed25519, encrypted),
-- outbound_secret (whsec_ for v1 on deliveries, encrypted), api_key (SHA-256 hash only).
CREATE TABLE merchant_credentials (
    merchant_id    text        NOT NULL,
    credential_id  bigint      GENERATED ALWAYS AS IDENTITY,
    kind           text        NOT NULL CHECK (kind IN ('inbound_secret', 'inbound_public_key',
                               'outbound_private_key', 'outbound_secret', 'api_key')),
    value          bytea       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    retired_at     timestamptz,
    PRIMARY KEY (merchant_id, credential_id)
);
CREATE INDEX merchant_credentials_active ON merchant_credentials (merchant_id, kind)
    WHERE retired_at IS NULL;
CREATE UNIQUE INDEX merchant_credentials_api_key ON merchant_credentials (merchant_id, value)
    WHERE kind = 'api_key';

-- Verified webhooks, one row per (merchant, webhook id): inserted and committed before the
-- sender gets its 202, applied by workers exactly once.
CREATE TABLE inbox (
    merchant_id      text        NOT NULL,
    webhook_id       text        NOT NULL,
    event_type       text        NOT NULL,
    payload          jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
                                 CHECK (status IN ('pending', 'applied', 'ignored', 'dead')),
    attempts         integer     NOT NULL DEFAULT 0,
    last_error       text,
    received_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    applied_at       timestamptz,
    PRIMARY KEY (merchant_id, webhook_id)
);
CREATE INDEX inbox_pending ON inbox (merchant_id, next_attempt_at) WHERE status = 'pending';
"""

DOWNGRADE = "DROP TABLE inbox, merchant_credentials, merchants;"


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
