"""The fraud guard's tables: identity links (keyed digests, never raw values), the guard's
decision on each reward-bearing intent, review cases, and members frozen by a reviewer.

- `merchant_credentials` may hold an `identity_key`: each merchant's random key for the
  identity digests, sealed under the keyring like every credential (and moved by `keys rotate`
  with them), so that the digests cannot be tested against guesses from the database alone.
- `fraud_identity_links`: member M was seen with identifier (kind, digest). The primary key
  answers "which members share this identifier"; `fraud_identity_links_by_member` answers
  "which identifiers has M"; `fraud_identifiers` counts each identifier's members, so "how
  many members share anything with M" is two index reads.
- `fraud_decisions`: one row per reward-bearing intent (its ledger key), `clear` or `hold`,
  with the score, the deciding rule, the reasons in words and the features read.
- `fraud_cases`: held intents of a member open or join the member's one open case; a reviewer
  decides it once (`clear`, `confirm`, or `escalate` to keep it open for a senior reviewer).

Revision ID: 0014_fraud_guard
Revises: 0013_key_ids
"""

from pointguard.migrations.script_runner import execute_script

revision = "0014_fraud_guard"
down_revision = "0013_key_ids"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE merchant_credentials DROP CONSTRAINT merchant_credentials_kind_check;
ALTER TABLE merchant_credentials ADD CONSTRAINT merchant_credentials_kind_check
    CHECK (kind IN ('inbound_secret', 'inbound_public_key', 'outbound_private_key',
                    'outbound_secret', 'api_key', 'shopify_secret', 'woocommerce_secret',
                    'endpoint_url', 'jwks_url', 'identity_key'));

-- The guard's velocity features read a member's recent events.
CREATE INDEX program_applied_events_by_member
    ON program_applied_events (merchant_id, member_id, occurred_at);

CREATE TABLE fraud_identity_links (
    merchant_id    text        NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('device', 'ip_prefix', 'card',
                                                        'address', 'email', 'phone')),
    digest         bytea       NOT NULL,
    member_id      text        NOT NULL,
    first_seen_at  timestamptz NOT NULL,
    last_seen_at   timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, kind, digest, member_id)
);
CREATE INDEX fraud_identity_links_by_member
    ON fraud_identity_links (merchant_id, member_id, kind, digest);
-- How many members each identifier links, kept as links are added: "how many share this" is
-- one row read, never a count over a busy identifier's links.
CREATE TABLE fraud_identifiers (
    merchant_id  text    NOT NULL,
    kind         text    NOT NULL,
    digest       bytea   NOT NULL,
    members      integer NOT NULL,
    PRIMARY KEY (merchant_id, kind, digest)
);

CREATE TABLE fraud_cases (
    merchant_id  text        NOT NULL,
    case_id      bigint      GENERATED ALWAYS AS IDENTITY,
    member_id    text        NOT NULL,
    status       text        NOT NULL DEFAULT 'open'
                 CHECK (status IN ('open', 'escalated', 'cleared', 'confirmed')),
    opened_at    timestamptz NOT NULL,
    decided_at   timestamptz,
    decided_by   text,
    note         text,
    froze_member boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (merchant_id, case_id)
);
-- A member has at most one undecided case: held events join it.
CREATE UNIQUE INDEX fraud_cases_one_open_per_member ON fraud_cases (merchant_id, member_id)
    WHERE status IN ('open', 'escalated');
CREATE INDEX fraud_cases_queue ON fraud_cases (merchant_id, status, opened_at);

CREATE TABLE fraud_decisions (
    merchant_id     text        NOT NULL,
    intent_key      text        NOT NULL,
    event_id        text        NOT NULL,
    member_id       text        NOT NULL,
    points          bigint      NOT NULL,
    source          text        NOT NULL,
    decision        text        NOT NULL CHECK (decision IN ('clear', 'hold')),
    score           double precision NOT NULL,
    decided_by      text        NOT NULL,
    reasons         jsonb       NOT NULL DEFAULT '[]',
    features        jsonb       NOT NULL DEFAULT '{}',
    feature_schema  integer     NOT NULL,
    case_id         bigint,
    ledger_entry_id bigint,     -- the earn, once posted (its lot is held while the case is open)
    decided_at      timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, intent_key)
);
CREATE INDEX fraud_decisions_by_case ON fraud_decisions (merchant_id, case_id)
    WHERE case_id IS NOT NULL;
CREATE INDEX fraud_decisions_by_member ON fraud_decisions (merchant_id, member_id, decided_at);

CREATE TABLE fraud_frozen_members (
    merchant_id  text        NOT NULL,
    member_id    text        NOT NULL,
    case_id      bigint      NOT NULL,
    frozen_at    timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, member_id)
);
"""

DOWNGRADE = """
DROP TABLE fraud_frozen_members, fraud_decisions, fraud_cases, fraud_identifiers,
    fraud_identity_links;
DROP INDEX program_applied_events_by_member;
DELETE FROM merchant_credentials WHERE kind = 'identity_key';
ALTER TABLE merchant_credentials DROP CONSTRAINT merchant_credentials_kind_check;
ALTER TABLE merchant_credentials ADD CONSTRAINT merchant_credentials_kind_check
    CHECK (kind IN ('inbound_secret', 'inbound_public_key', 'outbound_private_key',
                    'outbound_secret', 'api_key', 'shopify_secret', 'woocommerce_secret',
                    'endpoint_url', 'jwks_url'));
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
