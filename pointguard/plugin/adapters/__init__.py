"""Adapters for storefronts that sign and shape webhooks their own way: Shopify-style
(`shopify.py`), WooCommerce-style (`woocommerce.py`) and Saleor-style (`saleor.py`). Each turns
the sender's payload into our canonical event, so the same inbox, workers and program apply it;
`fields.py` holds what they share: reading required fields, prices as minor units, and the
canonical event's envelope.

No sender signs a timestamp: replays are stopped by the dedupe id instead. Topics we do not use
are acknowledged and ignored.
"""
