"""The `pointguard` command as an operator runs it, in a child process, on the test database."""

import json
import os
import subprocess
import sys
from pathlib import Path

from pointguard import db
from pointguard.ledger import operations as ops
from pointguard.ledger.seal import seal


def pointguard(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db.libpq_url(database_url)}
    return subprocess.run(
        [sys.executable, "-m", "pointguard.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_ledger_verify_passes_then_reports_a_tampered_posting(
    engine, run, merchant, database_url
):
    earned = await run(
        ops.earn, merchant, "ann", 100, key="o1", description="100 points", source="test"
    )
    await run(ops.earn, merchant, "ann", 20, key="o2", description="20 points", source="test")
    await run(seal, merchant)

    ok = pointguard(database_url, "ledger", "verify", "--merchant", merchant)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"merchant {merchant}: 2 sealed entries, ok" in ok.stdout

    async with db.connection(engine) as pg, pg.transaction():
        # What an attacker with superuser rights could do: bypass the append-only triggers.
        await pg.execute("SET LOCAL session_replication_role = replica")
        await pg.execute(
            "UPDATE ledger_postings SET amount_points = amount_points + 1000"
            " WHERE merchant_id = $1 AND entry_id = $2 AND account_id > 0",
            merchant,
            earned.entry_id,
        )

    broken = pointguard(database_url, "ledger", "verify", "--merchant", merchant)
    assert broken.returncode == 1
    assert "BROKEN" in broken.stdout
    assert f"entry {earned.entry_id}: 2 postings summing to 1000" in broken.stdout
    assert "stored 120, postings say 1120" in broken.stdout
    assert f"hash chain: entry {earned.entry_id} (seal 1) does not match its seal" in broken.stdout


def test_demo_runs_and_its_ledger_verifies(database_url):
    result = pointguard(database_url, "demo")
    assert result.returncode == 0, result.stderr
    for expected in (
        "Welcome to Acme Rewards",
        "300 points for order #1001",
        "30 points back for the refund on order #1001",
        "badge 'Regular'",
        "Redeemed: 500 points for 5 EUR off",
        "Challenges completed: three-orders.",
        "all checks pass",
    ):
        assert expected in result.stdout, result.stdout


def test_program_load_refuses_an_invalid_document_and_keeps_the_version_in_force(
    database_url, merchant, tmp_path
):
    example = Path(__file__).resolve().parent.parent / "docs" / "examples" / "program.toml"
    loaded = pointguard(database_url, "program", "load", str(example), "--merchant", merchant)
    assert loaded.returncode == 0, loaded.stderr
    assert "saved as version 1" in loaded.stdout

    broken = tmp_path / "broken.toml"
    broken.write_text(
        example.read_text()
        .replace('points_per_major_unit = "1"', 'points_per_major_unit = "-1"')
        .replace("threshold = 150000", "threshold = 40000")
    )
    refused = pointguard(database_url, "program", "load", str(broken), "--merchant", merchant)
    assert refused.returncode == 1
    assert "$.earning.points_per_major_unit: must not be negative, got -1" in refused.stderr
    assert "$.tiers.levels[2].threshold: tiers overlap" in refused.stderr
    assert "nothing was saved" in refused.stderr

    shown = pointguard(database_url, "program", "show", "--merchant", merchant)
    assert shown.returncode == 0, shown.stderr
    assert ": version 1" in shown.stdout and "version 2" not in shown.stdout


def test_program_analytics_prints_json(database_url, merchant):
    example = Path(__file__).resolve().parent.parent / "docs" / "examples" / "program.toml"
    assert (
        pointguard(
            database_url,
            "program",
            "load",
            str(example),
            "--merchant",
            merchant,
            "--effective-from",
            "2026-01-01",
        ).returncode
        == 0
    )
    shown = pointguard(
        database_url,
        "program",
        "analytics",
        "--merchant",
        merchant,
        "--from",
        "2026-01-01",
        "--to",
        "2026-02-01",
    )
    assert shown.returncode == 0, shown.stderr
    figures = json.loads(shown.stdout)
    assert (figures["members"], figures["repeat_purchase_rate"], figures["currency"]) == (
        0,
        None,
        "EUR",
    )
