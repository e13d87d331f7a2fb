"""docs/graphql.md's token snippets, run as written: the tokens they mint open `/graphql`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pointguard.graphql.customer_tokens import customer_token_secret
from tests.graphql.conftest import new_shop
from tests.plugin.conftest import SECRET_KEY

DOC = Path(__file__).parents[2] / "docs" / "graphql.md"
BLOCK = re.compile(r"^```(\w+) token\n(.*?)^```$", re.MULTILINE | re.DOTALL)
BALANCE = "{ me { balance { available } } }"


def snippets() -> dict[str, str]:
    return {m.group(1): m.group(2) for m in BLOCK.finditer(DOC.read_text())}


def python_token(secret: str, merchant_id: str) -> str:
    namespace: dict[str, object] = {}
    exec(snippets()["python"], namespace)
    return namespace["customer_token"](secret, merchant_id, "ann")  # type: ignore[operator]


def node_token(secret: str, merchant_id: str) -> str:
    if shutil.which("node") is None:
        pytest.skip("node is not installed here: the JavaScript snippet cannot run")
    code = snippets()["js"] + f"\nconsole.log(customerToken({secret!r}, {merchant_id!r}, 'ann'));"
    done = subprocess.run(["node", "-e", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("mint", [python_token, node_token])
async def test_a_token_minted_as_the_docs_show_opens_the_api(open_app, run, mint):
    merchant = await new_shop(run, "Docs Shop")
    secret = customer_token_secret(merchant.webhook_secret)
    token = mint(secret, merchant.merchant_id)  # on the wall clock, as a storefront would
    async with open_app(POINTGUARD_SECRET_KEY=SECRET_KEY) as (_, client):
        response = await client.post(
            "/graphql", json={"query": BALANCE}, headers={"authorization": f"Bearer {token}"}
        )
    assert response.json() == {"data": {"me": {"balance": {"available": 1000}}}}
