"""The double-entry points ledger.

Revision ID: 0001_ledger
Revises:
"""

from pointguard.migrations.script_runner import execute_script

revision = "0001_ledger"
down_revision = None
branch_labels = None
depends_on = None

# Every primary and unique key starts with merchant_id, so the schema can be distributed by
# merchant (Citus) without change. System accounts (issued, redeemed, expired, forfeited) have
# fixed negative ids and no balance row: their balances are derived from postings, with
# checkpoints kept by the sealer, so no entry ever locks or updates a merchant-wide row.
# Postings carry no foreign keys: entries, accounts and postings are always written by the same
# statement or transaction, a per-row key check cost most of a batch's time, and `ledger verify`
# checks that every posting names a real entry and account.
UPGRADE = """
CREATE TABLE ledger_accounts (
    merchant_id     text        NOT NULL,
    account_id      bigint      GENERATED ALWAYS AS IDENTITY,
    member_id       text        NOT NULL CHECK (member_id <> ''),
    kind            text        NOT NULL CHECK (kind IN ('available', 'pending', 'reserved')),
    balance_points  bigint      NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, account_id),
    UNIQUE (merchant_id, member_id, kind),
    CHECK (balance_points >= 0 OR kind = 'available')
);

CREATE TABLE ledger_entries (
    merchant_id      text        NOT NULL,
    entry_id         bigint      GENERATED ALWAYS AS IDENTITY,
    idempotency_key  text        NOT NULL,
    kind             text        NOT NULL,
    description      text        NOT NULL,
    source           text        NOT NULL,
    metadata         jsonb       NOT NULL DEFAULT '{}',
    reverses         bigint,
    settles          bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    seal_seq         bigint,
    seal_hash        bytea,
    PRIMARY KEY (merchant_id, entry_id),
    UNIQUE (merchant_id, idempotency_key)
);
CREATE INDEX ledger_entries_unsealed ON ledger_entries (merchant_id, entry_id)
    WHERE seal_seq IS NULL;
CREATE UNIQUE INDEX ledger_entries_seal_order ON ledger_entries (merchant_id, seal_seq)
    WHERE seal_seq IS NOT NULL;

CREATE TABLE ledger_postings (
    merchant_id    text   NOT NULL,
    entry_id       bigint NOT NULL,
    account_id     bigint NOT NULL,
    amount_points  bigint NOT NULL CHECK (amount_points <> 0),
    PRIMARY KEY (merchant_id, entry_id, account_id)
);
-- Members' histories read this; system accounts are summed per unsealed entry instead, and
-- leaving them out keeps every entry from inserting into one hot index page per merchant.
CREATE INDEX ledger_postings_by_account ON ledger_postings (merchant_id, account_id, entry_id)
    WHERE account_id > 0;

CREATE TABLE ledger_lots (
    merchant_id       text        NOT NULL,
    lot_id            bigint      NOT NULL,
    member_id         text        NOT NULL,
    pending_points    bigint      NOT NULL CHECK (pending_points >= 0),
    available_points  bigint      NOT NULL CHECK (available_points >= 0),
    release_at        timestamptz,
    expires_at        timestamptz,
    release_held      boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (merchant_id, lot_id)
);
CREATE INDEX ledger_lots_spendable ON ledger_lots (merchant_id, member_id, expires_at, lot_id)
    WHERE available_points > 0;
CREATE INDEX ledger_lots_expiring ON ledger_lots (merchant_id, expires_at)
    WHERE available_points > 0 AND expires_at IS NOT NULL;
CREATE INDEX ledger_lots_releasable ON ledger_lots (merchant_id, release_at)
    WHERE pending_points > 0;

CREATE TABLE ledger_holds (
    merchant_id    text        NOT NULL,
    hold_id        bigint      NOT NULL,
    member_id      text        NOT NULL,
    amount_points  bigint      NOT NULL CHECK (amount_points > 0),
    expires_at     timestamptz NOT NULL,
    status         text        NOT NULL DEFAULT 'open'
                               CHECK (status IN ('open', 'captured', 'voided')),
    closed_by      bigint,
    PRIMARY KEY (merchant_id, hold_id)
);
CREATE INDEX ledger_holds_open ON ledger_holds (merchant_id, expires_at) WHERE status = 'open';

CREATE TABLE ledger_hold_lots (
    merchant_id  text   NOT NULL,
    hold_id      bigint NOT NULL,
    lot_id       bigint NOT NULL,
    points       bigint NOT NULL CHECK (points > 0),
    PRIMARY KEY (merchant_id, hold_id, lot_id)
);

CREATE TABLE ledger_seal_heads (
    merchant_id  text   NOT NULL,
    last_seq     bigint NOT NULL,
    last_hash    bytea  NOT NULL,
    PRIMARY KEY (merchant_id)
);

CREATE TABLE ledger_system_balances (
    merchant_id            text   NOT NULL,
    account_id             bigint NOT NULL CHECK (account_id < 0),
    sealed_balance_points  bigint NOT NULL,
    PRIMARY KEY (merchant_id, account_id)
);

-- Append-only: postings never change; an entry changes once, when the sealer stamps it.
CREATE FUNCTION ledger_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE FUNCTION ledger_entries_seal_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.seal_seq IS NOT NULL OR NEW.seal_seq IS NULL OR NEW.seal_hash IS NULL
       OR (to_jsonb(OLD) - 'seal_seq' - 'seal_hash')
          IS DISTINCT FROM (to_jsonb(NEW) - 'seal_seq' - 'seal_hash') THEN
        RAISE EXCEPTION 'ledger entries are append-only: only the sealer may stamp an entry, once'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER ledger_postings_append_only BEFORE UPDATE OR DELETE ON ledger_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER ledger_postings_no_truncate BEFORE TRUNCATE ON ledger_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE OR TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER ledger_entries_sealed_once BEFORE UPDATE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_seal_only();
"""

DOWNGRADE = """
DROP TABLE ledger_system_balances, ledger_seal_heads, ledger_hold_lots, ledger_holds,
    ledger_lots, ledger_postings, ledger_entries, ledger_accounts;
DROP FUNCTION ledger_entries_seal_only();
DROP FUNCTION ledger_forbid_change();
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
