"""The fixtures of `tests/plugin` that the security tests reuse: the shop app, merchants'
endpoints and storefronts served on 127.0.0.1, and the key that seals merchants' secrets."""

from __future__ import annotations

from tests.plugin.conftest import receiver, secret_key, shop, storefront

__all__ = ["receiver", "secret_key", "shop", "storefront"]
