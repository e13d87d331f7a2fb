"""What Shopify-, WooCommerce- and Saleor-style senders sign with: a merchant's JWKS URL (the
storefront's RS256 keys, not a secret) and sender-chosen HMAC secrets (encrypted, as the
other credentials are).

Revision ID: 0007_sender_keys
Revises: 0006_deliveries
"""

from pointguard.migrations.script_runner import execute_script

revision = "0007_sender_keys"
down_revision = "0006_deliveries"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE merchants ADD COLUMN jwks_url text;

-- shopify_secret, woocommerce_secret: the secret the shop owner chose in Shopify (the app's
-- secret) or WooCommerce (the webhook's secret), AES-GCM encrypted; one active of each.
ALTER TABLE merchant_credentials DROP CONSTRAINT merchant_credentials_kind_check;
ALTER TABLE merchant_credentials ADD CONSTRAINT merchant_credentials_kind_check
    CHECK (kind IN ('inbound_secret', 'inbound_public_key', 'outbound_private_key',
                    'outbound_secret', 'api_key', 'shopify_secret', 'woocommerce_secret'));
"""

DOWNGRADE = """
DELETE FROM merchant_credentials WHERE kind IN ('shopify_secret', 'woocommerce_secret');
ALTER TABLE merchant_credentials DROP CONSTRAINT merchant_credentials_kind_check;
ALTER TABLE merchant_credentials ADD CONSTRAINT merchant_credentials_kind_check
    CHECK (kind IN ('inbound_secret', 'inbound_public_key', 'outbound_private_key',
                    'outbound_secret', 'api_key'));
ALTER TABLE merchants DROP COLUMN jwks_url;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
