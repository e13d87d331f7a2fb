"""docs/webhooks.md's walkthrough, run exactly as written: its blocks tagged `walkthrough` (the
merchant and its program, the curl, Python and JavaScript signing snippets, the member's
balance), in order, as one terminal session would, against `pointguard serve` on the test
database. The documented balance must be the balance the blocks produce."""

import asyncio
import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from pointguard import db

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "webhooks.md"
BLOCK = re.compile(r"^```(\w+) walkthrough\n(.*?)^```$", re.MULTILINE | re.DOTALL)
TOOLS = ("bash", "curl", "openssl", "xxd", "base64", "node")
DEADLINE_S = 60
PENDING = """
SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
       string_agg(last_error, '; ') FILTER (WHERE status = 'dead') AS dead
FROM inbox WHERE merchant_id = $1
"""


def walkthrough() -> list[tuple[str, str]]:
    """`(language, code)` of each tagged block, in the document's order."""
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(DOC.read_text())]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_block(
    language: str, code: str, env: dict[str, str], cwd: Path
) -> tuple[str, dict[str, str]]:
    """Run one block; its output, and the environment after it (a shell block's exports carry
    on to the next block, as in a terminal)."""
    if language == "bash":
        saved = cwd / ".walkthrough-env"
        command = ["bash", "-c", f"set -eo pipefail\n{code}\nenv -0 > {saved}"]
    elif language == "python":
        command = [sys.executable, "-c", code]
    else:
        command = ["node", "--input-type=module", "-e", code]
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{language} block failed:\n{code}\n{done.stdout}{done.stderr}"
    if language == "bash":
        pairs = (item.split("=", 1) for item in saved.read_text().split("\0") if "=" in item)
        env = dict(pairs)
    return done.stdout, env


async def test_the_walkthrough_runs_as_written(database_url, engine, tmp_path):
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the walkthrough's snippets need {', '.join(missing)}, not installed here")
    blocks = walkthrough()
    assert [language for language, _ in blocks] == ["bash", "bash", "python", "js", "bash"]
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")  # the doc's paths, from a scratch folder
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db.libpq_url(database_url),
        "POINTGUARD_SECRET_KEY": base64.b64encode(os.urandom(32)).decode(),
        "POINTGUARD_PORT": str(port),
        "POINTGUARD_URL": f"http://127.0.0.1:{port}",
    }
    server = subprocess.Popen(  # noqa: ASYNC220 (started once; the test waits on HTTP)
        [str(ROOT / ".venv" / "bin" / "pointguard"), "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        await _ready(env["POINTGUARD_URL"])
        *setup_and_sends, (_, balance) = blocks
        outputs = []
        for language, code in setup_and_sends:
            output, env = run_block(language, code, env, tmp_path)
            outputs.append(output)
        merchant = env["MERCHANT"]
        assert "saved as version 1" in outputs[0]
        for sent in outputs[1:]:
            assert re.search(r"\b202\b", sent) and '"status":"pending"' in sent, sent
        await _applied(engine, merchant)
        shown, _ = run_block("bash", balance, env, tmp_path)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    documented = re.search(r"^# (cust-42 at )\S+(: .*)$", balance, re.MULTILINE)
    assert documented, "the balance block shows no output"
    assert shown.splitlines()[0] == f"{documented[1]}{merchant}{documented[2]}"


async def _ready(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(DEADLINE_S * 10):
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("pointguard serve did not become ready")


async def _applied(engine, merchant: str) -> None:
    """Wait for the server's workers to apply every webhook of the merchant (none dead)."""
    for _ in range(DEADLINE_S * 10):
        async with db.connection(engine) as pg:
            pending, dead = await pg.fetchrow(PENDING, merchant)
        assert dead is None, f"a walkthrough webhook was dead-lettered: {dead}"
        if pending == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the walkthrough's webhooks were not applied in time")
