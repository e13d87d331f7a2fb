"""Storefront integration: signed webhook verification and adapters, the exactly-once inbox,
workers, and the signed outbound outbox. Arrives with the webhook plugin issue."""
