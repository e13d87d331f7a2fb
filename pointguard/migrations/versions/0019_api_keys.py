"""API keys get a role and a name, and one table of their own: a key is found by its hash
alone, so a caller need not say which merchant it is.

- `merchant_api_keys`: one row per key, by merchant and the SHA-256 of its plaintext (the
  plaintext is shown once, when made). `role`: `storefront` (checkouts; `merchant create`
  prints one), `reviewer` (fraud review cases) or `admin` (program, keys, dead letters).
  `name` is who holds it, carried into the audit trail; unique among a merchant's live keys.
  Revoked keys stay, so old audit lines keep naming someone.
- The storefront keys kept in `merchant_credentials` until now move here, named `storefront`.

Revision ID: 0019_api_keys
Revises: 0017_fraud_labels
"""

from pointguard.migrations.script_runner import execute_script

revision = "0019_api_keys"
down_revision = "0017_fraud_labels"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE merchant_api_keys (
    merchant_id  text        NOT NULL REFERENCES merchants (merchant_id),
    key_hash     bytea       NOT NULL,
    role         text        NOT NULL CHECK (role IN ('storefront', 'reviewer', 'admin')),
    name         text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    PRIMARY KEY (merchant_id, key_hash)
);
-- Finding a key's merchant by its hash alone: not unique, so the merchant-led keys stay the
-- only ones (docs/scaling.md); a 192-bit random key's hash does not collide.
CREATE INDEX merchant_api_keys_by_hash ON merchant_api_keys (key_hash);
CREATE UNIQUE INDEX merchant_api_keys_live_name ON merchant_api_keys (merchant_id, name)
    WHERE revoked_at IS NULL;
INSERT INTO merchant_api_keys (key_hash, merchant_id, role, name, created_at, revoked_at)
SELECT value, merchant_id, 'storefront',
       CASE WHEN retired_at IS NULL THEN 'storefront' ELSE 'storefront-' || credential_id END,
       created_at, retired_at
FROM merchant_credentials WHERE kind = 'api_key';
DELETE FROM merchant_credentials WHERE kind = 'api_key';
"""

DOWNGRADE = """
INSERT INTO merchant_credentials (merchant_id, kind, value, created_at, retired_at)
SELECT merchant_id, 'api_key', key_hash, created_at, revoked_at FROM merchant_api_keys
WHERE role = 'storefront';
DROP TABLE merchant_api_keys;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
