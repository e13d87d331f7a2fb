"""docs/integration.md, run exactly as written: every block tagged `integration` (the
merchant, the program, webhooks in, customer tokens, `me`, the checkout, our webhooks out), in
curl, Python and JavaScript alike, in order, as one terminal session would, against `pointguard
serve` on the test database. Each block must print what the document shows under it (`…`
stands for what differs from run to run: ids, secrets), and the ledger must end as the
document says: the signup's points less the captured reward, the order's points pending, the
abandoned cart's reservation voided."""

import re

from pointguard import db
from pointguard.ledger import member_balances
from tests.docs_blocks import (
    ROOT,
    applied,
    blocks,
    run_block,
    server_env,
    serving,
    skip_without,
)

DOC = ROOT / "docs" / "integration.md"
SHOWN = re.compile(r"^\s*(?:#|//) (.*)$")
HOLDS = "SELECT status, amount_points FROM ledger_holds WHERE merchant_id = $1 ORDER BY hold_id"
EACH = ["bash", "python", "js"]
# the merchant by the CLI, then by GraphQL; the program; webhooks in; a customer token; `me`;
# quote, reserve, capture, void; the balance; receiving one of our webhooks, then checking it
STEPS = ["bash", *EACH, "bash", *EACH, "bash", *EACH * 5, "bash", "python", "bash", "js"]


def documented(code: str) -> list[str]:
    """The output a block shows: its comment-only lines (`# …` in bash and Python, `// …` in
    JavaScript)."""
    return [m[1] for line in code.splitlines() if (m := SHOWN.match(line))]


def matches(shown: str, printed: str) -> bool:
    pattern = ".*?".join(re.escape(part) for part in shown.split("…"))
    return re.fullmatch(pattern, printed) is not None


async def test_the_integration_guide_runs_as_written(database_url, engine, tmp_path):
    skip_without("bash", "curl", "jq", "openssl", "xxd", "base64", "node")
    found = blocks(DOC, "integration")
    files = [block for block in found if block.file]
    assert [block.file for block in files] == [
        "pointguard_client.py",
        "pointguard_client.mjs",
        "pointguard_receiver.py",
        "pointguard_receiver.mjs",
    ]
    runs = [block for block in found if not block.file]
    assert [block.language for block in runs] == STEPS
    env = server_env(
        database_url,
        POINTGUARD_OPERATOR_KEY="operator-" + "k" * 40,
        POINTGUARD_ALLOW_LOOPBACK_ENDPOINTS="1",
    )
    outputs: list[tuple[str, str]] = []
    async with serving(env, tmp_path):
        for block in found:
            if block.file:
                (tmp_path / block.file).write_text(block.code)
                continue
            if block.code.lstrip().startswith("b64url()"):  # the token step reads the balances
                await applied(engine, env["MERCHANT"])
            printed, env = run_block(block.language, block.code, env, tmp_path)
            outputs.append((block.code, printed))
        merchant = env["MERCHANT"]
        async with db.connection(engine) as pg:
            holds = [tuple(row) for row in await pg.fetch(HOLDS, merchant)]
            balances = await member_balances(pg, merchant, "cust-42")

    for code, printed in outputs:
        lines = [line for line in printed.splitlines() if line.strip()]
        shown = documented(code)
        assert len(lines) == len(shown), f"printed {lines}, the document shows {shown}:\n{code}"
        for want, got in zip(shown, lines, strict=True):
            assert matches(want, got), f"printed {got!r}, the document shows {want!r}"
    assert holds == [("captured", 200), ("voided", 200)]
    assert (
        balances.available_points,
        balances.pending_points,
        balances.reserved_points,
    ) == (300, 89, 0)
    reserved = {printed.split()[0] for code, printed in outputs if 'cart-8812", cart' in code}
    assert reserved == {env["REDEMPTION"]}, "the reservations with one key answered apart"
