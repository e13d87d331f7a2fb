"""Each member's last program event, kept on their program row, for inactivity expiry.

Inactivity expiry and its reminders found inactive members by grouping every applied event of
the merchant (`program_applied_events`), on every upkeep pass: work that grows with the
merchant's whole history. The row that applying an event already locks and rewrites now
carries the time of the member's newest event, indexed.

Revision ID: 0012_member_activity
Revises: 0011_outbox_dispatched
"""

from pointguard.migrations.script_runner import execute_script

revision = "0012_member_activity"
down_revision = "0011_outbox_dispatched"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE program_members ADD COLUMN last_activity_at timestamptz;
UPDATE program_members m SET last_activity_at = (
    SELECT max(e.occurred_at) FROM program_applied_events e
    WHERE e.merchant_id = m.merchant_id AND e.member_id = m.member_id);
CREATE INDEX program_members_last_activity ON program_members (merchant_id, last_activity_at);
"""

DOWNGRADE = """
DROP INDEX program_members_last_activity;
ALTER TABLE program_members DROP COLUMN last_activity_at;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
