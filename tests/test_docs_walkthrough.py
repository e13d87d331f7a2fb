"""docs/webhooks.md's walkthrough, run exactly as written: its blocks tagged `walkthrough` (the
merchant and its program, the curl, Python and JavaScript signing snippets, the member's
balance), in order, as one terminal session would, against `pointguard serve` on the test
database. The documented balance must be the balance the blocks produce."""

import re

from tests.docs_blocks import ROOT, applied, blocks, run_block, server_env, serving, skip_without

DOC = ROOT / "docs" / "webhooks.md"


async def test_the_walkthrough_runs_as_written(database_url, engine, tmp_path):
    skip_without("bash", "curl", "openssl", "xxd", "base64", "node")
    found = blocks(DOC, "walkthrough")
    assert [block.language for block in found] == ["bash", "bash", "python", "js", "bash"]
    env = server_env(database_url)
    async with serving(env, tmp_path):
        *setup_and_sends, balance = found
        outputs = []
        for block in setup_and_sends:
            output, env = run_block(block.language, block.code, env, tmp_path)
            outputs.append(output)
        merchant = env["MERCHANT"]
        assert "saved as version 1" in outputs[0]
        for sent in outputs[1:]:
            assert re.search(r"\b202\b", sent) and '"status":"pending"' in sent, sent
        await applied(engine, merchant)
        shown, _ = run_block("bash", balance.code, env, tmp_path)
    documented = re.search(r"^# (cust-42 at )\S+(: .*)$", balance.code, re.MULTILINE)
    assert documented, "the balance block shows no output"
    assert shown.splitlines()[0] == f"{documented[1]}{merchant}{documented[2]}"
