"""The points dashboard (`/review#/dashboard`) in a real browser, as the review console's test
drives it (Debian's chromium, headless, through Playwright): a reviewer signs in, opens the
dashboard, and reads the small ledger of tests/graphql/test_dashboard_api.py, built on the
last days before today (the page asks for the last 30 days, by the browser's clock). The charts'
data points and bars and the tables under them must say what the API says, and what the test
knows the days hold; then the weekly view. A screenshot goes to
test-artifacts/console/dashboard.png.

Without a browser that can be launched, the browser test is skipped with the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from pointguard.console import CONTENT_SECURITY_POLICY
from pointguard.plugin.api_keys import KeyRole, new_api_key
from tests.console.test_review_console import ARTIFACTS, launch, watched_page
from tests.graphql.conftest import new_shop
from tests.graphql.test_dashboard_api import EXPECTED_DAYS, POINTS_OVER_TIME, small_ledger
from tests.plugin.test_ingest import serving_app

DAY = timedelta(days=1)
LEVELS = ("pending", "held", "available", "reserved", "liability")
FLOWS = ("issued", "released", "redeemed", "expired", "forfeited")
CHARTED_LEVELS = ("liability", "available", "pending", "held")


def figures_by_day(start: datetime) -> dict[str, dict[str, int]]:
    """The test's own figures for the ledger's days, by the bucket's start as the API says it."""
    return {
        (start + n * DAY).isoformat(): {k: v for k, v in day.items() if k not in ("start", "end")}
        for n, day in enumerate(EXPECTED_DAYS)
    }


async def api_figures(base: str, key: str, start: datetime, end: datetime, bucket: str) -> Any:
    async with httpx.AsyncClient(base_url=base) as client:
        answer = await client.post(
            "/graphql",
            json={
                "query": POINTS_OVER_TIME,
                "variables": {"start": start.isoformat(), "end": end.isoformat(), "bucket": bucket},
            },
            headers={"authorization": f"Bearer {key}"},
        )
    buckets = answer.json()["data"]["pointsOverTime"]
    return {b["start"]: b for b in buckets}


async def drawn(page: Any, selector: str) -> dict[tuple[str, str], int]:
    """(series, bucket start) → value, of the chart's marks that `selector` finds."""
    marks = await page.locator(selector).evaluate_all(
        "marks => marks.map(m => [m.dataset.series, m.dataset.bucket, m.dataset.value])"
    )
    return {(series, bucket): int(value) for series, bucket, value in marks}


async def tabled(page: Any, table_id: str, columns: tuple[str, ...]) -> dict[str, dict[str, int]]:
    rows = await page.locator(f"#{table_id} tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.bucket,"
        " [...r.querySelectorAll('td')].map(c => [c.dataset.series, c.textContent])])"
    )
    found = {bucket: {s: int(text.replace(",", "")) for s, text in cells} for bucket, cells in rows}
    assert all(set(cells) == set(columns) for cells in found.values())
    return found


async def test_the_dashboard_draws_the_ledgers_figures(database_url, run):
    async_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
    shop = await new_shop(run, "Dashboard Shop")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - 10 * DAY  # the ledger's day 0; its days 0 to 6 are 10 to 4 days ago
    await small_ledger(run, shop.merchant_id, start)
    key = await run(new_api_key, shop.merchant_id, KeyRole.REVIEWER, "rita")
    period_end = today + DAY  # the page's last 30 days: up to the end of today
    period_start = period_end - 30 * DAY
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    async with (
        serving_app(database_url) as base,
        async_api.async_playwright() as playwright,
    ):
        api = await api_figures(base, key, period_start, period_end, "DAY")
        assert len(api) == 30
        known = figures_by_day(start)
        for bucket, figures in known.items():  # the API says what the test knows
            assert {k: api[bucket][k] for k in figures} == figures, bucket
        # the day before day 0: the shop's welcome points to ann (1,000 and 300 pending)
        opening = api[(start - DAY).isoformat()]
        assert (opening["issued"], opening["available"], opening["pending"]) == (1300, 1000, 300)
        for bucket, figures in api.items():  # before it: nothing
            if bucket < (start - DAY).isoformat():
                assert set(figures.values()) - {bucket, figures["end"]} == {0}, bucket

        browser = await launch(playwright)
        try:
            page, problems, external = await watched_page(browser, base)

            opened = await page.goto(f"{base}/review#/dashboard")
            assert opened is not None and opened.headers["content-security-policy"] == (
                CONTENT_SECURITY_POLICY
            )
            key_field = page.get_by_label("Reviewer API key")
            await key_field.fill(key)
            await key_field.press("Enter")
            title = page.get_by_role("heading", name="Points dashboard", level=1)
            await title.wait_for()
            await page.get_by_role("status").filter(has_text="members hold").wait_for()
            assert await title.evaluate("h => document.activeElement === h")
            nav = page.get_by_role("navigation", name="Console")
            current = nav.get_by_role("link", name="Dashboard")
            assert await current.get_attribute("aria-current") == "page"

            # Every data point and bar is the API's number for its bucket and series.
            points = await drawn(page, "#balances-chart circle.point")
            bars = await drawn(page, "#flows-chart rect.bar")
            assert points == {(s, b): api[b][s] for b in api for s in CHARTED_LEVELS}
            assert bars == {(s, b): api[b][s] for b in api for s in FLOWS}
            assert await tabled(page, "balances-table", LEVELS) == {
                b: {s: api[b][s] for s in LEVELS} for b in api
            }
            assert await tabled(page, "flows-table", FLOWS) == {
                b: {s: api[b][s] for s in FLOWS} for b in api
            }
            last = api[max(api)]
            summary = await page.locator("#dashboard-summary").text_content()
            assert summary is not None
            assert f"members hold {last['liability']:,} points" in summary
            assert f"{last['held']} held for review" in summary
            # Labelled: each chart an image named by its title, each series in the legend.
            for chart, name, names in (
                (
                    "balances-chart",
                    "Points members hold at the end of each day",
                    ["Liability", "Available", "Pending", "Held for review"],
                ),
                (
                    "flows-chart",
                    "Points issued, released, redeemed, expired and forfeited per day",
                    ["Issued", "Released", "Redeemed", "Expired", "Forfeited"],
                ),
            ):
                await page.locator(f"#{chart}").get_by_role("img", name=name).wait_for()
                legend = await page.locator(f"#{chart} .legend li").all_text_contents()
                assert legend == names
            # The tables open from the keyboard.
            summary_toggle = page.locator("#balances-chart + details summary")
            await summary_toggle.focus()
            await page.keyboard.press("Enter")
            await page.get_by_role("table", name="Points at the end of each bucket").wait_for()
            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            # The weekly view: 26 weeks, the last one this week.
            monday = today - today.weekday() * DAY
            weeks_end = monday + 7 * DAY
            week_api = await api_figures(base, key, weeks_end - 26 * 7 * DAY, weeks_end, "WEEK")
            picker = page.get_by_label("Period")
            await picker.focus()
            await picker.select_option("WEEK")
            first_week = min(week_api)
            row = page.locator(f'#flows-table tbody tr[data-bucket="{first_week}"]')
            await row.wait_for(state="attached")
            assert await picker.evaluate("p => document.activeElement === p")  # focus stays
            weeks = await drawn(page, "#flows-chart rect.bar")
            week_rows = await tabled(page, "flows-table", FLOWS)
            assert len(week_api) == 26
            assert weeks == {(s, b): week_api[b][s] for b in week_api for s in FLOWS}
            assert week_rows == {b: {s: week_api[b][s] for s in FLOWS} for b in week_api}
            # the whole ledger is in the weeks shown: their flows add up to the days' (and the
            # opening 1,300), the last week ends owing what the last day does
            for flow in FLOWS:
                days = sum(d[flow] for d in known.values()) + opening[flow]
                assert sum(w[flow] for w in week_api.values()) == days, flow
            assert week_api[max(week_api)]["liability"] == last["liability"] == 1080
            await page.screenshot(path=str(ARTIFACTS / "dashboard-weeks.png"), full_page=True)
            assert problems == []
            assert external == []
        finally:
            await browser.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 0


async def test_the_dashboards_script_is_served_with_the_policy_and_writes_no_markup(database_url):
    async with serving_app(database_url) as base, httpx.AsyncClient(base_url=base) as client:
        answer = await client.get("/review/dashboard.js")
        page = (await client.get("/review")).text
    assert answer.status_code == 200
    assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert answer.headers["content-type"].startswith("text/javascript")
    script = answer.text
    for markup_sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert markup_sink not in script, markup_sink
    assert "https://" not in script and "http://" not in script.replace(
        "http://www.w3.org/2000/svg", ""
    )
    assert '<script src="/review/dashboard.js" defer></script>' in page
