"""Schemathesis (GraphQL mode) fuzzes `/graphql` with queries and mutations made from the
schema, as each kind of caller, over HTTP against the app served by uvicorn: no answer may be
a 500. Bounded (examples per operation, and a time budget) so that CI can run it."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest

from pointguard.graphql.auth import Role
from tests.graphql.conftest import NOW, OPERATOR_KEY, new_shop
from tests.graphql.test_every_operation import credentials
from tests.plugin.test_ingest import serving_app

SCHEMA_FILE = Path(__file__).parents[2] / "docs" / "schema.graphql"
EXAMPLES = 4
SECONDS_PER_CALLER = 4  # the whole suite must stay under 10 minutes on CI


@pytest.mark.slow
async def test_no_fuzzed_request_is_a_server_error(database_url, run, tmp_path):
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    if st is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    merchant = await new_shop(run, "Fuzzed Shop")
    callers = await credentials(run, merchant, "ann")
    async with serving_app(
        database_url,
        clock=lambda: NOW,
        POINTGUARD_OPERATOR_KEY=OPERATOR_KEY,
        POINTGUARD_GRAPHQL_CUSTOMER_RATE_PER_S="1000",
    ) as base:
        # An admin key reaches the reviewers' operations too; the operator's one is in
        # test_every_operation.py.
        for role in (Role.CUSTOMER, Role.STOREFRONT, Role.ADMIN):
            process = await asyncio.create_subprocess_exec(
                st,
                "run",
                str(SCHEMA_FILE),
                "--url",
                f"{base}/graphql",
                "--header",
                f"Authorization:{callers[role]['authorization']}",
                "--checks",
                "no_internal_error",
                "--max-examples",
                str(EXAMPLES),
                "--max-time",
                str(SECONDS_PER_CALLER),
                "--seed",
                "1",
                "--workers",
                "1",
                "--phases",
                "examples,fuzzing",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=tmp_path,
                env={
                    **os.environ,
                    "SCHEMATHESIS_HOOKS": "fuzz_checks",
                    "PYTHONPATH": str(Path(__file__).parent),
                },
            )
            output, _ = await process.communicate()
            text = output.decode()
            assert process.returncode == 0, f"{role}:\n{text[-5000:]}"
