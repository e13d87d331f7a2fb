"""The fraud guard's features of schema 2: identity-graph components kept as links are
recorded, and each merchant's running median of points earned in 24 hours.

- `fraud_member_components`: member M is in component C (C names one of its members). Only
  members with a hard link (card, device, address) have a row; a member without is alone.
  `fraud_member_components_by_component` finds a component's members when a larger component
  absorbs it.
- `fraud_components`: how many members each component holds, kept as components merge: a
  member's component size is two primary-key reads, never a walk of the graph.
- `fraud_merchant_stats`: the merchant's running (approximate, streaming) median of the points
  a member earned in 24 hours, and how many observations moved it.

Components start from the links recorded after this revision: links recorded before it are
joined only as their identifiers see new members.

Revision ID: 0016_fraud_features
Revises: 0015_fraud_model
"""

from pointguard.migrations.script_runner import execute_script

revision = "0016_fraud_features"
down_revision = "0015_fraud_model"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE fraud_member_components (
    merchant_id   text NOT NULL,
    member_id     text NOT NULL,
    component_id  text NOT NULL,
    PRIMARY KEY (merchant_id, member_id)
);
CREATE INDEX fraud_member_components_by_component
    ON fraud_member_components (merchant_id, component_id);

CREATE TABLE fraud_components (
    merchant_id   text    NOT NULL,
    component_id  text    NOT NULL,
    members       integer NOT NULL CHECK (members > 0),
    PRIMARY KEY (merchant_id, component_id)
);

CREATE TABLE fraud_merchant_stats (
    merchant_id        text             PRIMARY KEY,
    points_24h_median  double precision NOT NULL,
    observations       bigint           NOT NULL
);
"""

DOWNGRADE = """
DROP TABLE fraud_merchant_stats, fraud_components, fraud_member_components;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
