"""A completed challenge can be revoked: when the orders that completed it are returned, its
bonus is taken back and the member may complete it again. `generation` counts completions
after a revocation, so that each completion's bonus has its own ledger key.

Revision ID: 0009_challenge_revocations
Revises: 0008_dead_letter_indexes
"""

from pointguard.migrations.script_runner import execute_script

revision = "0009_challenge_revocations"
down_revision = "0008_dead_letter_indexes"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE program_challenge_completions
    ADD COLUMN generation integer NOT NULL DEFAULT 0,
    ADD COLUMN revoked_at timestamptz;
"""

DOWNGRADE = """
ALTER TABLE program_challenge_completions DROP COLUMN revoked_at, DROP COLUMN generation;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
