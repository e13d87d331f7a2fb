"""Checkouts the fraud guard refused: a member linked (by a card or a device) to a member
under review, frozen or confirmed as abusive asks to spend points; the reservation is
refused (`MemberUnderReview`) and the member's case opened or joined, with this row saying why.

Revision ID: 0020_refused_redemptions
Revises: 0019_api_keys
"""

from pointguard.migrations.script_runner import execute_script

revision = "0020_refused_redemptions"
down_revision = "0019_api_keys"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE fraud_refused_redemptions (
    merchant_id      text        NOT NULL,
    idempotency_key  text        NOT NULL,  -- the checkout's: a retry is refused once
    member_id        text        NOT NULL,
    reward_id        text        NOT NULL,
    reasons          jsonb       NOT NULL,
    case_id          bigint      NOT NULL,
    refused_at       timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, idempotency_key)
);
CREATE INDEX fraud_refused_redemptions_by_case ON fraud_refused_redemptions (merchant_id, case_id);
"""

DOWNGRADE = "DROP TABLE fraud_refused_redemptions;"


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
