"""Reward redemptions, each one a ledger hold, and a lock row per reward with limited stock.

A redemption is live while its hold is open or captured; a voided or timed-out hold gives its
stock and per-member allowance back, so nothing here counts or needs a clean-up job.

Revision ID: 0003_rewards
Revises: 0002_program
"""

from pointguard.migrations.script_runner import execute_script

revision = "0003_rewards"
down_revision = "0002_program"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE program_redemptions (
    merchant_id      text        NOT NULL,
    redemption_id    bigint      NOT NULL,  -- the ledger hold (the reserve entry's id)
    idempotency_key  text        NOT NULL,  -- the caller's key: a retry returns this row
    member_id        text        NOT NULL,
    reward_id        text        NOT NULL,
    code             text        NOT NULL,  -- unguessable, from `secrets`
    points           bigint      NOT NULL CHECK (points > 0),
    discount_minor   bigint      NOT NULL CHECK (discount_minor >= 0),
    free_shipping    boolean     NOT NULL DEFAULT false,
    free_sku         text,
    description      text        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, redemption_id),
    UNIQUE (merchant_id, code),
    UNIQUE (merchant_id, idempotency_key)
);
CREATE INDEX program_redemptions_by_reward ON program_redemptions (merchant_id, reward_id);
CREATE INDEX program_redemptions_by_member
    ON program_redemptions (merchant_id, member_id, reward_id);

-- Redemptions of one reward with limited stock take this row's lock first, one at a time, so
-- the stock they count cannot change under them.
CREATE TABLE program_reward_locks (
    merchant_id  text NOT NULL,
    reward_id    text NOT NULL,
    PRIMARY KEY (merchant_id, reward_id)
);
"""

DOWNGRADE = """
DROP TABLE program_reward_locks, program_redemptions;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
