"""Credentials name the key that sealed them, and the values that are not secret are bound to
their merchant too.

`key_id` is the id (`secretbox.key_id`) of the key a value is sealed under, so that
`pointguard keys rotate` can move every value to a new key while the old one still opens what
is left; NULL for values stored before this revision (tried under each key) and for API keys'
hashes, which no key seals. `endpoint_url` and `jwks_url` rows hold the merchant's URLs sealed
(the `merchants` columns stay, in the clear, for queries and listings, and must match), and
`inbound_public_key` rows are sealed from now on: a value copied from another merchant's row no
longer opens. What was stored before is sealed by the server's next start (it has the key; a
migration does not).

The downgrade deletes what the older schema cannot read: the sealed URLs and public keys.

Revision ID: 0013_key_ids
Revises: 0012_member_activity
"""

from pointguard.migrations.script_runner import execute_script

revision = "0013_key_ids"
down_revision = "0012_member_activity"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE merchant_credentials ADD COLUMN key_id text;
ALTER TABLE merchant_credentials DROP CONSTRAINT merchant_credentials_kind_check;
ALTER TABLE merchant_credentials ADD CONSTRAINT merchant_credentials_kind_check
    CHECK (kind IN ('inbound_secret', 'inbound_public_key', 'outbound_private_key',
                    'outbound_secret', 'api_key', 'shopify_secret', 'woocommerce_secret',
                    'endpoint_url', 'jwks_url'));
-- API keys are hashes, never sealed; every other kind is sealed, under a named key or (before
-- this revision) an unnamed one.
ALTER TABLE merchant_credentials ADD CONSTRAINT merchant_credentials_api_key_unsealed
    CHECK (kind <> 'api_key' OR key_id IS NULL);
"""

DOWNGRADE = """
DELETE FROM merchant_credentials
WHERE kind IN ('endpoint_url', 'jwks_url')
   OR (kind = 'inbound_public_key' AND key_id IS NOT NULL);
ALTER TABLE merchant_credentials DROP CONSTRAINT merchant_credentials_api_key_unsealed;
ALTER TABLE merchant_credentials DROP CONSTRAINT merchant_credentials_kind_check;
ALTER TABLE merchant_credentials ADD CONSTRAINT merchant_credentials_kind_check
    CHECK (kind IN ('inbound_secret', 'inbound_public_key', 'outbound_private_key',
                    'outbound_secret', 'api_key', 'shopify_secret', 'woocommerce_secret'));
ALTER TABLE merchant_credentials DROP COLUMN key_id;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
