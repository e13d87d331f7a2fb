"""The review console in a real browser (Debian's chromium, headless, driven by Playwright):
a merchant whose events are the simulator's sybil ring, replayed through the real program
and guard, so the ring's shared card opens cases with linked members. A reviewer opens
/review, is refused with a wrong key, signs in with their own, sees the queue, opens the
ring's case, sees the linked members in the graph, and confirms it with a note (written as
markup, shown as text); a case someone else decides while it is on screen says so in words.
The database then says the held points were forfeited and the ledger verifies. Screenshots
of the queue and the case (open, then decided) go to test-artifacts/console/.

Without a browser that can be launched, the browser test is skipped with the reason."""

from __future__ import annotations

import base64
import json
import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from pointguard import db
from pointguard.console import CONTENT_SECURITY_POLICY
from pointguard.fraud.backtest.program import BACKTEST_PROGRAM
from pointguard.fraud.backtest.replay import replay
from pointguard.fraud.backtest.stream import read_stream
from pointguard.fraud.cases import ReviewAction, case_detail, load_case
from pointguard.fraud.simulation.attacks import sybil_ring
from pointguard.fraud.simulation.identities import Identities
from pointguard.fraud.simulation.period import Period
from pointguard.fraud.simulation.stream import line_of
from pointguard.ledger import AccountKind, member_balances, system_balances
from pointguard.plugin.api_keys import KeyRole, new_api_key
from pointguard.plugin.merchants import create_merchant
from pointguard.program.document.validate import parse_program
from pointguard.program.review import review_case
from tests.plugin.conftest import SECRET_KEY
from tests.plugin.test_ingest import serving_app

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
RING_SEED = 7
START = datetime(2026, 3, 2, tzinfo=UTC)
RING_DAYS = 14
NOW = START + timedelta(days=RING_DAYS)  # the app's clock: the ring's cases are open
WAIT_MS = 10_000
KIND_WORDS = {"ip_prefix": "network"}  # the console's words for identifier kinds
NOTE = "one card, a ring of accounts <img src=x onerror=window.injected=1>"


@pytest.fixture
async def ring(run, engine, merchant):
    """The merchant (the `merchant` fixture's id) after the sybil ring's events, with a
    reviewer key; the open cases' ids by member, those with linked members first."""
    await run(create_merchant, base64.b64decode(SECRET_KEY), "Ring Shop", merchant_id=merchant)
    rng = random.Random(RING_SEED)
    events = sybil_ring(rng, Identities(rng), Period(START, RING_DAYS))
    texts = [json.dumps(line_of(event, f"ring-{n}")) for n, event in enumerate(events)]
    program = parse_program(BACKTEST_PROGRAM)
    await replay(engine, read_stream(texts), program, merchant_id=merchant, review_after=None)
    key = await run(new_api_key, merchant, KeyRole.REVIEWER, "rita")
    async with db.connection(engine) as pg:
        rows = await pg.fetch(
            "SELECT member_id, case_id FROM fraud_cases WHERE merchant_id = $1"
            " AND status = 'open' ORDER BY case_id",
            merchant,
        )
        linked = {
            r["case_id"]: (await case_detail(pg, merchant, r["case_id"])).linked for r in rows
        }
    assert linked, "the sybil ring opened no case"
    return key, linked


async def launch(playwright):
    from playwright.async_api import Error

    try:
        return await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    except Error as error:
        pytest.skip(f"chromium cannot be launched: {error.message.splitlines()[0]}")


async def watched_page(browser: Any, base: str) -> tuple[Any, list[str], list[str]]:
    """A laptop-sized page, the script errors it logs (the browser's own look for
    /favicon.ico, which the app has not, aside) and the requests it makes to other origins."""
    page = await browser.new_page(viewport={"width": 1366, "height": 900})
    page.set_default_timeout(WAIT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda message: (
            problems.append(message.text)
            if message.type == "error" and not message.location["url"].endswith("/favicon.ico")
            else None
        ),
    )
    external: list[str] = []
    page.on(
        "request",
        lambda request: None if request.url.startswith(base) else external.append(request.url),
    )
    return page, problems, external


async def test_a_reviewer_confirms_the_rings_case_in_the_browser(
    database_url, engine, run, merchant, ring, assert_ledger_intact
):
    async_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
    key, linked = ring
    case_id = max(linked, key=lambda c: len(linked[c]))
    assert linked[case_id], "the ring's case has no linked members"
    member_id = (await run(load_case, merchant, case_id)).member_id
    before = await run(member_balances, merchant, member_id)
    forfeited_before = (await run(system_balances, merchant))[AccountKind.FORFEITED]
    assert before.pending_points > 0
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)

    async with (
        serving_app(database_url, clock=lambda: NOW) as base,
        async_api.async_playwright() as playwright,
    ):
        browser = await launch(playwright)
        try:
            page, problems, external = await watched_page(browser, base)

            opened = await page.goto(f"{base}/review")
            assert opened is not None and opened.status == 200
            assert opened.headers["content-security-policy"] == CONTENT_SECURITY_POLICY

            # A wrong key: refused in words, and asked again.
            key_field = page.get_by_label("Reviewer API key")
            await key_field.fill("pgk_not-a-real-key")
            await key_field.press("Enter")
            await page.get_by_role("alert").filter(has_text="not accepted").wait_for()
            assert await key_field.is_visible()
            problems.clear()  # the browser logs the 401 itself

            # The reviewer's key, typed once and sent with the keyboard.
            await key_field.fill(key)
            await key_field.press("Enter")
            queue = page.get_by_role("table").first
            await page.get_by_role("heading", name="Review queue").wait_for()
            case_link = page.get_by_role("link", name=f"Case {case_id}", exact=True)
            await case_link.wait_for()
            rows = await queue.locator("tbody tr").count()
            assert rows == len(linked)
            await page.screenshot(path=str(ARTIFACTS / "queue.png"), full_page=True)

            await case_link.focus()
            await page.keyboard.press("Enter")
            await page.get_by_role("heading", name=f"Case {case_id}: member {member_id}").wait_for()
            graph = page.locator("#ring-graph")
            await graph.wait_for()
            titles = await graph.locator("title").all_text_contents()
            for link in linked[case_id]:
                assert any(t.startswith(f"{link.member_id}:") for t in titles), (link, titles)
            edge_labels = await graph.locator(".edge-label").all_text_contents()
            assert sorted(edge_labels) == sorted(
                ", ".join(KIND_WORDS.get(kind, kind) for kind in link.shared)
                for link in linked[case_id]
            )
            assert any("card" in label for label in edge_labels), edge_labels  # the ring's card
            assert await page.get_by_text("Status: open").is_visible()

            # A held event's features beside the merchant's usual values.
            features = page.locator("details").first
            await features.locator("summary").focus()
            await page.keyboard.press("Enter")
            table = features.get_by_role("table")
            await table.wait_for()
            assert await table.get_by_role("columnheader", name="Usual (median)").is_visible()
            age = table.get_by_role("row", name="account age days")
            cells = await age.get_by_role("cell").all_text_contents()
            assert len(cells) == 4 and cells[1] != "", cells  # value, median, p90, compared
            assert await page.locator("#features-hint").filter(has_text="cleared decisions").count()
            await page.screenshot(path=str(ARTIFACTS / "case-open.png"), full_page=True)

            await page.get_by_label("Note").fill(NOTE)
            await page.get_by_label("Freeze member").check()
            await page.get_by_role("button", name="Confirm abuse").click()
            await page.get_by_text("Status: confirmed").wait_for()
            await page.get_by_role("status").filter(has_text="is now confirmed").wait_for()
            assert await page.get_by_text(NOTE, exact=True).is_visible()  # text, not markup
            assert await page.evaluate("window.injected") is None
            assert not await page.get_by_role("button", name="Confirm abuse").is_visible()
            await page.screenshot(path=str(ARTIFACTS / "case.png"), full_page=True)

            # Another case, decided by someone else while it is on screen: said in words.
            other = next(c for c in linked if c != case_id)
            await page.goto(f"{base}/review#/case/{other}")
            await page.get_by_role("heading", name=f"Case {other}: member").wait_for()
            await run(review_case, merchant, other, ReviewAction.CLEAR, reviewer="sam", now=NOW)
            await page.get_by_role("button", name="Escalate").click()
            said = page.get_by_role("status").filter(has_text="Nothing changed")
            await said.wait_for()
            assert "already cleared" in await said.text_content()
            await page.get_by_text("Status: cleared").wait_for()
            assert await page.locator("dd").filter(has_text="UTC by sam").is_visible()

            await page.get_by_role("button", name="Sign out").click()
            await key_field.wait_for()
            assert await page.evaluate("sessionStorage.length") == 0
            assert problems == [] and external == []
        finally:
            await browser.close()

    case = await run(load_case, merchant, case_id)
    assert (case.status, case.decided_by, case.note, case.froze_member) == (
        "confirmed",
        "rita",
        NOTE,
        True,
    )
    after = await run(member_balances, merchant, member_id)
    assert after.pending_points == 0
    assert after.available_points == before.available_points
    forfeited = (await run(system_balances, merchant))[AccountKind.FORFEITED]
    assert forfeited - forfeited_before == before.pending_points
    await assert_ledger_intact()
    assert (ARTIFACTS / "queue.png").stat().st_size > 0
    for shot in ("case-open.png", "case.png"):
        assert (ARTIFACTS / shot).stat().st_size > 0


async def test_the_console_is_served_with_its_policy_and_puts_data_in_as_text(database_url):
    """Each file answers with the Content-Security-Policy; the script never writes markup."""
    async with serving_app(database_url) as base, httpx.AsyncClient(base_url=base) as client:
        answers = {
            path: await client.get(path)
            for path in ("/review", "/review/app.js", "/review/style.css")
        }
    for path, answer in answers.items():
        assert answer.status_code == 200, path
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert answer.headers["x-content-type-options"] == "nosniff", path
    assert answers["/review"].headers["content-type"].startswith("text/html")
    assert answers["/review/app.js"].headers["content-type"].startswith("text/javascript")
    page = answers["/review"].text
    assert '<script src="/review/app.js"' in page and "<script>" not in page
    assert "style=" not in page and "<style" not in page
    script = answers["/review/app.js"].text
    for markup_sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert markup_sink not in script, markup_sink
    assert "http://" not in script.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in script + page
