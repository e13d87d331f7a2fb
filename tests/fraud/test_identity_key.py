"""Each merchant's identity key: made once on first use, stored only sealed, and the same key
after the keyring rotates, so that digests made before a rotation still match those after."""

import os

from pointguard import db
from pointguard.plugin.merchants import create_merchant, merchant_identity_key, reseal_all
from pointguard.plugin.secretbox import Keyring

OLD_KEY, NEW_KEY = os.urandom(32), os.urandom(32)


async def test_the_identity_key_is_made_once_sealed_and_kept_across_a_rotation(engine, run):
    merchant = (await run(create_merchant, OLD_KEY, "Keyed Shop")).merchant_id
    first = await run(merchant_identity_key, OLD_KEY, merchant)
    assert len(first) == 32
    assert await run(merchant_identity_key, OLD_KEY, merchant) == first
    async with db.connection(engine) as pg:
        stored = await pg.fetch(
            "SELECT value FROM merchant_credentials WHERE merchant_id = $1"
            " AND kind = 'identity_key'",
            merchant,
        )
    assert len(stored) == 1 and first not in bytes(stored[0]["value"])

    rotated = Keyring(NEW_KEY, (OLD_KEY,))
    await reseal_all(engine, rotated, moving_to=rotated.current_id)
    assert await run(merchant_identity_key, Keyring(NEW_KEY), merchant) == first
    other = (await run(create_merchant, NEW_KEY, "Other Shop")).merchant_id
    assert await run(merchant_identity_key, NEW_KEY, other) != first
