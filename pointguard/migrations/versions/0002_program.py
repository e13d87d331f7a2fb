"""Program documents (versioned per merchant) and the program's record of members, orders,
rewarded actions and applied events.

Revision ID: 0002_program
Revises: 0001_ledger
"""

from pointguard.migrations.script_runner import execute_script

revision = "0002_program"
down_revision = "0001_ledger"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE program_versions (
    merchant_id     text        NOT NULL,
    version         integer     NOT NULL CHECK (version > 0),
    effective_from  timestamptz NOT NULL,
    document        jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, version)
);
CREATE INDEX program_versions_in_force ON program_versions (merchant_id, effective_from, version);

-- One row per event the program has applied: applying an event twice does nothing twice.
CREATE TABLE program_applied_events (
    merchant_id  text        NOT NULL,
    event_id     text        NOT NULL,
    event_type   text        NOT NULL,
    member_id    text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, event_id)
);

CREATE TABLE program_members (
    merchant_id        text        NOT NULL,
    member_id          text        NOT NULL,
    tier               text,
    tier_review_at     timestamptz,
    birthday           date,
    categories_bought  text[]      NOT NULL DEFAULT '{}',
    promotion_points   jsonb       NOT NULL DEFAULT '{}',
    referral_code      text,
    leaderboard_alias  text,  -- set when the member opts in to the leaderboard
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, member_id)
);
CREATE UNIQUE INDEX program_members_referral_code ON program_members (merchant_id, referral_code);

-- Who referred whom. `status` is the referrer's side: attached (waiting for the referee's
-- first order), rewarded, too_small, capped, reversed, or refused_self.
CREATE TABLE program_referrals (
    merchant_id       text        NOT NULL,
    referee_id        text        NOT NULL,
    referrer_id       text        NOT NULL,
    status            text        NOT NULL,
    referee_rewarded  boolean     NOT NULL DEFAULT false,
    first_order_id    text,
    created_at        timestamptz NOT NULL,
    rewarded_at       timestamptz,
    PRIMARY KEY (merchant_id, referee_id)
);
CREATE INDEX program_referrals_by_referrer
    ON program_referrals (merchant_id, referrer_id, status, rewarded_at);

CREATE TABLE program_orders (
    merchant_id  text        NOT NULL,
    order_id     text        NOT NULL,
    member_id    text        NOT NULL,
    paid_at      timestamptz NOT NULL,
    lines        jsonb       NOT NULL,
    qualifying   jsonb       NOT NULL,  -- line id -> eligible spend of the item line
    bonus_keys   jsonb       NOT NULL,
    refunded     jsonb       NOT NULL DEFAULT '{}',
    cancelled    boolean     NOT NULL DEFAULT false,
    bonuses_returned boolean NOT NULL DEFAULT false,
    PRIMARY KEY (merchant_id, order_id)
);

CREATE TABLE program_actions (
    merchant_id  text        NOT NULL,
    event_id     text        NOT NULL,
    member_id    text        NOT NULL,
    action       text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    points       integer     NOT NULL,
    PRIMARY KEY (merchant_id, event_id)
);
CREATE INDEX program_orders_by_member ON program_orders (merchant_id, member_id, paid_at);
CREATE INDEX program_members_tier_review ON program_members (merchant_id, tier_review_at);
CREATE INDEX program_actions_by_member
    ON program_actions (merchant_id, member_id, action, occurred_at);

CREATE TABLE program_challenge_completions (
    merchant_id   text        NOT NULL,
    member_id     text        NOT NULL,
    challenge_id  text        NOT NULL,
    badge         text        NOT NULL,
    completed_at  timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, member_id, challenge_id)
);

-- One reminder per member, expiry date and lead time: the upkeep never reminds twice.
CREATE TABLE program_expiry_reminders (
    merchant_id  text        NOT NULL,
    member_id    text        NOT NULL,
    expires_at   timestamptz NOT NULL,
    days_before  integer     NOT NULL,
    sent_at      timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, member_id, expires_at, days_before)
);

-- Events for the storefront, written in the same transaction as the ledger change; the
-- webhook plugin's dispatcher delivers them.
CREATE TABLE outbox (
    merchant_id  text        NOT NULL,
    outbox_id    bigint      GENERATED ALWAYS AS IDENTITY,
    event_type   text        NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, outbox_id)
);
"""

DOWNGRADE = """
DROP TABLE outbox, program_expiry_reminders, program_referrals, program_challenge_completions,
    program_actions, program_orders, program_members, program_applied_events, program_versions;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
