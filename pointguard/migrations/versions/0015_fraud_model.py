"""The fraud guard's model: one row per merchant, and the order in which it learned.

- `fraud_models`: the merchant's model. A worker locks this row before it claims the
  merchant's inbox rows, so one batch at a time scores and learns, in claim order. `seen`
  counts the intents the model has seen and `chain` is a running digest of them;
  `snapshot` is the pickled model after `snapshot_seen` of them, with the river version and
  the vector schema's hash it was made under, signed with an HMAC under a key derived from
  the merchant's identity key.
- `fraud_decisions.learn_seq`: the place of a decision's features in the model's stream
  (NULL: the model never saw it, as for an intent a hard rule held). Replaying the stored
  features in this order from a snapshot (or from nothing) rebuilds the model exactly.

Revision ID: 0015_fraud_model
Revises: 0014_fraud_guard
"""

from pointguard.migrations.script_runner import execute_script

revision = "0015_fraud_model"
down_revision = "0014_fraud_guard"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE fraud_models (
    merchant_id          text        PRIMARY KEY,
    seen                 bigint      NOT NULL DEFAULT 0,
    chain                bytea       NOT NULL DEFAULT '',
    snapshot             bytea,
    snapshot_seen        bigint,
    river_version        text,
    vector_schema_hash   text,
    signature            bytea,
    snapshot_at          timestamptz
);

ALTER TABLE fraud_decisions ADD COLUMN learn_seq bigint;
CREATE UNIQUE INDEX fraud_decisions_by_learn_seq ON fraud_decisions (merchant_id, learn_seq)
    WHERE learn_seq IS NOT NULL;
"""

DOWNGRADE = """
DROP INDEX fraud_decisions_by_learn_seq;
ALTER TABLE fraud_decisions DROP COLUMN learn_seq;
DROP TABLE fraud_models;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
