"""`pointguard db`: the embedded PostgreSQL's lifecycle, on a data folder of each test's own
(never the shared test server), with DATABASE_URL and XDG_RUNTIME_DIR unset as on a fresh
machine or in a container."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.cli_helpers import run_cli


@pytest.fixture
def fresh_env() -> Iterator[dict[str, str]]:
    """The environment of a machine whose PointGuard data folder is new. Not pytest's tmp_path,
    which pytest may prune under a running server (see conftest)."""
    data_dir = Path(tempfile.mkdtemp(prefix="pointguard-test-db-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "XDG_RUNTIME_DIR")}
    env["POINTGUARD_DATA_DIR"] = str(data_dir)
    yield env
    run_cli(env, "db", "stop", "--force")
    shutil.rmtree(data_dir, ignore_errors=True)


def status(env: dict[str, str]) -> dict[str, object]:
    shown = run_cli(env, "db", "status", "--json")
    assert shown.returncode == 0, shown.stderr
    parsed: dict[str, object] = json.loads(shown.stdout)
    return parsed


async def test_status_and_stop_on_a_fresh_folder_and_a_command_after_stop_starts_it_again(
    fresh_env,
):
    pg_dir = (Path(fresh_env["POINTGUARD_DATA_DIR"]) / "pg").resolve()
    fresh = run_cli(fresh_env, "db", "status")
    assert fresh.returncode == 0, fresh.stderr
    assert "embedded PostgreSQL: not created yet" in fresh.stdout
    assert f"data folder: {pg_dir}" in fresh.stdout
    assert "version: PostgreSQL 16" in fresh.stdout
    nothing = run_cli(fresh_env, "db", "stop")
    assert (nothing.returncode, nothing.stdout) == (0, "embedded PostgreSQL: not running\n")

    started = run_cli(fresh_env, "migrate")
    assert started.returncode == 0, started.stderr
    assert started.stderr == ""  # no platformdirs warning about XDG_RUNTIME_DIR
    running = status(fresh_env)
    assert running["running"] is True and isinstance(running["pid"], int)
    assert running["data_folder"] == str(pg_dir) and running["created"] is True
    assert isinstance(running["size_bytes"], int) and running["size_bytes"] > 1_000_000
    url = run_cli(fresh_env, "db", "url").stdout.strip()
    assert url == running["url"]
    connection = await asyncpg.connect(url)  # what psql would be given
    try:
        assert await connection.fetchval("SELECT count(*) FROM merchants") == 0
    finally:
        await connection.close()
    text = run_cli(fresh_env, "db", "status").stdout
    assert f"running (pid {running['pid']}); `pointguard db stop` stops it" in text
    assert f"url: {url}" in text

    stopped = run_cli(fresh_env, "db", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped (was pid {running['pid']}, {pg_dir})" in stopped.stdout
    assert _exits(running["pid"])  # the postmaster itself, not only pgserver's handle
    after = status(fresh_env)
    assert (after["running"], after["pid"], after["url"]) == (False, None, None)
    assert (
        "stopped; any pointguard command starts it again"
        in run_cli(fresh_env, "db", "status").stdout
    )

    again = run_cli(fresh_env, "merchant", "list")
    assert again.returncode == 0, again.stderr
    assert status(fresh_env)["running"] is True


def test_stop_refuses_while_another_pointguard_process_uses_the_server(fresh_env):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pointguard import db; from pointguard.config import load_settings;"
            " db.start_embedded_postgres(load_settings().embedded_pg_dir);"
            " print('up', flush=True); sys.stdin.read()",
        ],
        env=fresh_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "up\n"
        assert status(fresh_env)["used_by_pids"] == [holder.pid]
        refused = run_cli(fresh_env, "db", "stop")
        assert refused.returncode == 1
        assert f"in use by process(es) {holder.pid}; stop them first" in refused.stderr
        assert status(fresh_env)["running"] is True
        forced = run_cli(fresh_env, "db", "stop", "--force")
        assert forced.returncode == 0, forced.stderr
        assert status(fresh_env)["running"] is False
    finally:
        holder.communicate(timeout=60)  # closes its stdin: it exits


def _exits(pid: object, *, within_s: float = 10) -> bool:
    """Whether process `pid` is gone within `within_s` (pg_ctl returns once postmaster.pid is
    removed, a moment before the process ends)."""
    assert isinstance(pid, int)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False
