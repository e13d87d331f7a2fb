"""Chance rewards: lottery draws with their committed seeds and entries, scratch cards,
surprise-bonus runs, and one budget row per scratch-card campaign or surprise.

A draw copies its terms from the program when it opens, so a later program version cannot
change a draw already announced. Its seed is stored from the start and published only once the
draw has run; `seed_hash` is published at once. Budget rows are locked `FOR UPDATE` by every
payout of their campaign, so concurrent payouts can never exceed the budget.

Revision ID: 0004_chance
Revises: 0003_rewards
"""

from pointguard.migrations.script_runner import execute_script

revision = "0004_chance"
down_revision = "0003_rewards"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE program_lottery_draws (
    merchant_id        text        NOT NULL,
    draw_id            text        NOT NULL,
    name               text        NOT NULL,
    entry_cost_points  bigint      NOT NULL CHECK (entry_cost_points > 0),
    entries_close_at   timestamptz NOT NULL,
    prizes_points      bigint[]    NOT NULL,
    seed               bytea       NOT NULL CHECK (length(seed) = 32),  -- secret until drawn
    seed_hash          bytea       NOT NULL,  -- sha256(seed), published when the draw opens
    opened_at          timestamptz NOT NULL,
    drawn_at           timestamptz,           -- set once: the draw ran and its seed is public
    ticket_count       integer,
    tickets_sha256     bytea,
    winners            jsonb,
    PRIMARY KEY (merchant_id, draw_id)
);

CREATE TABLE program_lottery_entries (
    merchant_id      text        NOT NULL,
    entry_id         bigint      NOT NULL,  -- the ledger reserve entry, captured at once
    draw_id          text        NOT NULL,
    idempotency_key  text        NOT NULL,
    member_id        text        NOT NULL,
    entries          integer     NOT NULL CHECK (entries > 0),
    points           bigint      NOT NULL CHECK (points > 0),
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, entry_id),
    UNIQUE (merchant_id, idempotency_key)
);
CREATE INDEX program_lottery_entries_by_draw
    ON program_lottery_entries (merchant_id, draw_id, entry_id);

CREATE TABLE program_chance_budgets (
    merchant_id  text   NOT NULL,
    kind         text   NOT NULL CHECK (kind IN ('scratch', 'surprise')),
    campaign_id  text   NOT NULL,
    paid_points  bigint NOT NULL DEFAULT 0 CHECK (paid_points >= 0),
    PRIMARY KEY (merchant_id, kind, campaign_id)
);

CREATE TABLE program_scratch_cards (
    merchant_id      text        NOT NULL,
    card_id          bigint      GENERATED ALWAYS AS IDENTITY,
    idempotency_key  text        NOT NULL,
    campaign_id      text        NOT NULL,
    member_id        text        NOT NULL,
    prize_points     bigint      NOT NULL CHECK (prize_points >= 0),  -- what the card drew
    paid_points      bigint      NOT NULL CHECK (paid_points >= 0),   -- 0 once over budget
    ledger_entry_id  bigint,                                          -- the earn, if paid
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, card_id),
    UNIQUE (merchant_id, idempotency_key)
);
CREATE INDEX program_scratch_cards_by_member ON program_scratch_cards (merchant_id, member_id);

CREATE TABLE program_surprise_runs (
    merchant_id     text        NOT NULL,
    surprise_id     text        NOT NULL,
    run_key         text        NOT NULL,
    seed            bytea       NOT NULL,
    eligible_count  integer     NOT NULL,
    points          bigint      NOT NULL CHECK (points > 0),
    winners         text[]      NOT NULL,
    paid_points     bigint      NOT NULL CHECK (paid_points >= 0),
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, surprise_id, run_key)
);
"""

DOWNGRADE = """
DROP TABLE program_surprise_runs, program_scratch_cards, program_chance_budgets,
    program_lottery_entries, program_lottery_draws;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
