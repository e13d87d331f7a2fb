"""Running a document's tagged code blocks as written, in order, as one terminal session
would, against `pointguard serve` on the test database: the helpers of the docs' tests
(tests/test_docs_walkthrough.py for docs/webhooks.md, tests/test_docs_integration.py for
docs/integration.md).

A block is tagged after its language: "```bash walkthrough", "```python integration". A tag
followed by a file name ("```python integration pointguard_client.py") is a file the reader
saves: it is written into the session's folder, not run, and later blocks import it."""

import asyncio
import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pointguard import db

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_S = 60
PENDING = """
SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
       string_agg(last_error, '; ') FILTER (WHERE status = 'dead') AS dead
FROM inbox WHERE merchant_id = $1
"""


@dataclass(frozen=True)
class Block:
    language: str  # bash, python or js
    code: str
    file: str | None = None  # a file to save, not to run


def blocks(doc: Path, tag: str) -> list[Block]:
    """The blocks of `doc` tagged `tag`, in the document's order."""
    pattern = re.compile(
        rf"^```(\w+) {re.escape(tag)}(?: (\S+))?\n(.*?)^```$", re.MULTILINE | re.DOTALL
    )
    return [Block(m[1], m[3], m[2]) for m in pattern.finditer(doc.read_text())]


def skip_without(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the document's snippets need {', '.join(missing)}, not installed here")


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


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    """The session's environment: the test database, a fresh secret key, a free port, and
    this checkout's package first (the shared virtualenv may hold another checkout's)."""
    port = free_port()
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "DATABASE_URL": db.libpq_url(database_url),
        "POINTGUARD_SECRET_KEY": base64.b64encode(os.urandom(32)).decode(),
        "POINTGUARD_PORT": str(port),
        "POINTGUARD_URL": f"http://127.0.0.1:{port}",
        **extra,
    }


@asynccontextmanager
async def serving(env: dict[str, str], cwd: Path) -> AsyncIterator[None]:
    """`pointguard serve` with `env`, from `cwd` (where `.venv` points at this checkout's, so
    the documents' `.venv/bin/...` paths work), ready; stopped on the way out."""
    if not (cwd / ".venv").exists():
        (cwd / ".venv").symlink_to(ROOT / ".venv")
    server = subprocess.Popen(  # noqa: ASYNC220 (started once; the test waits on HTTP)
        [str(ROOT / ".venv" / "bin" / "pointguard"), "serve"],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        await ready(env["POINTGUARD_URL"])
        yield
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


async def ready(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(DEADLINE_S * 10):
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("pointguard serve did not become ready")


async def applied(engine, merchant: str) -> None:
    """Wait for the server's workers to apply every webhook of the merchant (none dead)."""
    for _ in range(DEADLINE_S * 10):
        async with db.connection(engine) as pg:
            pending, dead = await pg.fetchrow(PENDING, merchant)
        assert dead is None, f"a document's webhook was dead-lettered: {dead}"
        if pending == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the document's webhooks were not applied in time")
