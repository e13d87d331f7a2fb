"""The guard's classifier learns from reviewers' decisions, in the model's one order; members
are linked to the throwaway-inbox provider of their email.

- `fraud_cases.learn_seq`: the place of a decided case in the model's stream (NULL: not learned
  yet). A worker takes decided cases into the model under the merchant's model lock, so the
  labels interleave with the intents the same way in every replay.
- `fraud_identity_links.kind` may be `disposable_email`: the (digested) domain of an email
  from a throwaway-inbox provider.

Revision ID: 0017_fraud_labels
Revises: 0016_fraud_features
"""

from pointguard.migrations.script_runner import execute_script

revision = "0017_fraud_labels"
down_revision = "0016_fraud_features"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE fraud_identity_links DROP CONSTRAINT fraud_identity_links_kind_check;
ALTER TABLE fraud_identity_links ADD CONSTRAINT fraud_identity_links_kind_check
    CHECK (kind IN ('device', 'ip_prefix', 'card', 'address', 'email', 'phone',
                    'disposable_email'));
ALTER TABLE fraud_cases ADD COLUMN learn_seq bigint;
CREATE UNIQUE INDEX fraud_cases_by_learn_seq ON fraud_cases (merchant_id, learn_seq)
    WHERE learn_seq IS NOT NULL;
-- Decided cases the model has not learned yet: a short queue, read every round.
CREATE INDEX fraud_cases_to_learn ON fraud_cases (merchant_id, decided_at, case_id)
    WHERE learn_seq IS NULL AND status IN ('cleared', 'confirmed');
"""

DOWNGRADE = """
DELETE FROM fraud_identity_links WHERE kind = 'disposable_email';
DELETE FROM fraud_identifiers WHERE kind = 'disposable_email';
ALTER TABLE fraud_identity_links DROP CONSTRAINT fraud_identity_links_kind_check;
ALTER TABLE fraud_identity_links ADD CONSTRAINT fraud_identity_links_kind_check
    CHECK (kind IN ('device', 'ip_prefix', 'card', 'address', 'email', 'phone'));
DROP INDEX fraud_cases_to_learn;
DROP INDEX fraud_cases_by_learn_seq;
ALTER TABLE fraud_cases DROP COLUMN learn_seq;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
