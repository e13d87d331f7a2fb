"""The `pointguard` command run in a child process, as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

from pointguard import db

CLI_TIMEOUT_S = 120


def run_cli(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`pointguard *args` with exactly `env` as its environment."""
    return subprocess.run(
        [sys.executable, "-m", "pointguard.cli", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def pointguard(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`pointguard *args` on the test database, with this process's environment otherwise."""
    return run_cli({**os.environ, "DATABASE_URL": db.libpq_url(database_url)}, *args)
