"""The finance dashboard: who may open it, and, in headless Chromium against a live server,
that its charts draw from the unit-economics API and show the API's own figures.

The browser test needs Debian's `chromium` (scripts/system-packages.txt, installed by `make test`) and the `playwright`
Python package (dev extras); it never downloads a browser. A screenshot of the page is
kept in artifacts/dashboard.png.
"""

import os
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from billing.permissions import FINANCE_VIEWER
from billing.services.price_books import price_book_create
from infra_inventory.dashboard import PeriodForm, last_full_month
from infra_inventory.margins import margin_alerts_record
from infra_inventory.models import Cluster, Datacenter, GridIntensity, HardwareSku, PowerContract
from infra_inventory.services import costs_allocate
from metering.models import HourlyRollup
from metering.services import utc_now
from scripts.demo_pricing import price_list

DASHBOARD = "/admin/finance-dashboard/"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
START, END = datetime(2026, 10, 5, tzinfo=UTC), datetime(2026, 10, 8, tzinfo=UTC)  # three whole days
CHARTS = {  # container → the marks that show it has drawn
    "#fd-cost-tier": "svg path.fd-line",
    "#fd-datacenter": "svg rect.fd-segment",
    "#fd-margin-customer": "svg g.fd-bar rect",
    "#fd-margin-model": "svg g.fd-bar rect",
    "#fd-emissions": "svg g.fd-bar rect",
    "#fd-idle": "svg g.fd-bar rect",
}


def money(text: str) -> str:
    """The dashboard's display of an API amount: cents, half up, grouped, '$' after the sign."""
    value = Decimal(text).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return f"{'-' if value < 0 else ''}${abs(value):,.2f}"


def rollup(customer_id: str, model: str, cluster: str, hour: datetime, *, input_tokens: int, output: int) -> None:
    HourlyRollup.objects.create(customer_id=customer_id, model=model, service_tier="standard", region="us-east",
                                cluster=cluster, hour=hour, events=10, input_tokens=input_tokens,
                                cached_input_tokens=input_tokens // 4, output_tokens=output)


@pytest.fixture
def fleet_with_usage(catalog):
    """Two datacenters, three clusters (one never used: idle cost), list prices, three days
    of usage; allocated. globex's nano traffic on the dear Frankfurt cluster loses money. Both
    grids have an intensity and the H100s an embodied footprint (emissions chart)."""
    price_book_create(effective_from=datetime(2026, 1, 1, tzinfo=UTC), currency="USD", prices=price_list(),
                      actor="test", as_of=datetime(2026, 1, 1, tzinfo=UTC))
    h100 = HardwareSku.objects.create(name="h100-sxm", vendor="NVIDIA", accelerator="H100 SXM",
                                      unit_cost=Decimal("30000.00"), amortization_months=48, board_watts=700,
                                      embodied_kg_co2e=Decimal("1500"))
    mi300 = HardwareSku.objects.create(name="mi300x", vendor="AMD", accelerator="MI300X",
                                       unit_cost=Decimal("15000.00"), amortization_months=48, board_watts=750)
    iad = Datacenter.objects.create(name="iad-1", region="us-east", pue=Decimal("1.20"))
    fra = Datacenter.objects.create(name="fra-1", region="eu-central", pue=Decimal("1.35"))
    since = datetime(2026, 1, 1, tzinfo=UTC)
    PowerContract.objects.create(datacenter=iad, effective_from=since, price_per_kwh=Decimal("0.0800"))
    PowerContract.objects.create(datacenter=fra, effective_from=since, price_per_kwh=Decimal("0.2200"))
    GridIntensity.objects.create(datacenter=iad, effective_from=since, g_co2e_per_kwh=Decimal("380"))
    GridIntensity.objects.create(datacenter=fra, effective_from=since, g_co2e_per_kwh=Decimal("150"))
    for name, dc, sku, count in (("iad-h100-a", iad, h100, 8), ("iad-h100-spare", iad, h100, 4),
                                 ("fra-mi300-a", fra, mi300, 8)):
        Cluster.objects.create(name=name, datacenter=dc, sku=sku, accelerator_count=count, in_service_from=since)
    for day in range(3):
        for hour in range(0, 24, 6):
            at = START + timedelta(days=day, hours=hour)
            rollup("acme", "gpt-5.4", "iad-h100-a", at, input_tokens=2_000_000 + day * 500_000, output=600_000)
            rollup("acme", "gpt-5.4-mini", "iad-h100-a", at, input_tokens=1_500_000, output=400_000 + day * 100_000)
            rollup("globex", "gpt-5.4-nano", "fra-mi300-a", at, input_tokens=900_000, output=150_000 + day * 50_000)
    costs_allocate(start=START, end=END, as_of=utc_now())  # after the inventory was written: current
    margin_alerts_record(start=START, end=END, as_of=END + timedelta(days=1))


def staff_user(*groups: str) -> User:
    user = User.objects.create_user(f"staff-{'-'.join(groups) or 'plain'}", password="pw", is_staff=True)
    for group in groups:
        user.groups.add(Group.objects.get(name=group))
    return user


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def period_query() -> str:
    return f"start={START.date().isoformat()}&end={END.date().isoformat()}"


# --- who may open it ---------------------------------------------------------------------------


@pytest.mark.django_db
class TestAccess:
    def test_anonymous_is_sent_to_the_admin_login(self, client):
        response = client.get(DASHBOARD)

        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
        assert "next=/admin/finance-dashboard/" in response["Location"]

    def test_a_signed_in_user_who_is_not_staff_is_sent_to_the_login(self):
        user = User.objects.create_user("outsider", password="pw")

        response = logged_in(user).get(DASHBOARD)

        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")

    def test_staff_outside_the_finance_groups_are_refused(self):
        response = logged_in(staff_user()).get(DASHBOARD)

        assert response.status_code == 403

    def test_a_finance_viewer_sees_the_page_with_the_api_wired_in(self):
        response = logged_in(staff_user(FINANCE_VIEWER)).get(f"{DASHBOARD}?{period_query()}")

        assert response.status_code == 200
        page = response.content.decode()
        assert 'data-start="2026-10-05T00:00:00Z"' in page and 'data-end="2026-10-08T00:00:00Z"' in page
        assert 'data-unit-economics-url="/api/v1/unit-economics"' in page
        assert 'data-margin-alerts-url="/api/v1/margin-alerts"' in page
        assert "infra_inventory/dashboard.js" in page

    def test_a_period_that_ends_before_it_starts_is_refused(self):
        response = logged_in(staff_user(FINANCE_VIEWER)).get(f"{DASHBOARD}?start=2026-10-08&end=2026-10-05")

        assert response.status_code == 200
        assert "The period must end after it starts." in response.content.decode()
        assert "data-start=" not in response.content.decode()


class TestPeriod:
    @pytest.mark.parametrize(("today", "expected"), [
        (date(2026, 11, 22), (date(2026, 10, 1), date(2026, 11, 1))),
        (date(2026, 1, 1), (date(2025, 12, 1), date(2026, 1, 1))),
        (date(2026, 3, 31), (date(2026, 2, 1), date(2026, 3, 1))),
    ])
    def test_the_default_is_the_last_full_month(self, today, expected):
        assert last_full_month(today) == expected

    def test_start_and_end_are_whole_days(self):
        form = PeriodForm({"start": "2026-10-05", "end": "2026-10-05"})

        assert not form.is_valid()


# --- in the browser ----------------------------------------------------------------------------


def api(client: Client, url: str) -> dict:
    response = client.get(url, HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content
    return response.json()


def in_chromium(live_server, client: Client, query: str, read, *, screenshot: Path | None = None) -> dict:
    """Open the dashboard as `client`'s user, wait until every chart, the totals and the
    alerts have settled (drawn or failed), and return read(page). The ORM is not touched
    in here: Playwright's event loop runs on this thread while the browser is open."""
    from playwright.sync_api import sync_playwright

    session = client.cookies["sessionid"].value
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.add_cookies([{"name": "sessionid", "value": session, "url": live_server.url}])
            page = context.new_page()
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{live_server.url}{DASHBOARD}?{query}")
            page.wait_for_function("""() => [...document.querySelectorAll('.fd-chart, #fd-totals, #fd-alerts')]
                .every((box) => box.dataset.state)""", timeout=20_000)
            if screenshot:
                screenshot.parent.mkdir(exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
            return {**read(page), "errors": errors}
        finally:
            browser.close()


def states(page) -> list[str]:
    return page.locator(".fd-chart").evaluate_all("charts => charts.map(c => c.dataset.state)")


@pytest.mark.django_db(transaction=True)
def test_the_dashboard_draws_the_apis_figures(live_server, fleet_with_usage):
    client = logged_in(staff_user(FINANCE_VIEWER))
    instants = f"start={START.isoformat().replace('+00:00', 'Z')}&end={END.isoformat().replace('+00:00', 'Z')}"
    by_customer = api(client, f"/api/v1/unit-economics?{instants}&group_by=customer")
    by_tier_day = api(client, f"/api/v1/unit-economics?{instants}&group_by=model_tier,day")
    by_cluster = api(client, f"/api/v1/unit-economics?{instants}&group_by=cluster")
    by_datacenter = api(client, f"/api/v1/unit-economics?{instants}&group_by=datacenter")
    alerts = api(client, f"/api/v1/margin-alerts?{instants}")
    globex = next(row for row in by_customer["results"] if row["customer"] == "globex")
    frontier = next(row for row in by_tier_day["results"] if row["model_tier"] == "frontier")
    spare = next(row for row in by_cluster["results"] if row["cluster"] == "iad-h100-spare")
    iad = next(row for row in by_datacenter["results"] if row["datacenter"] == "iad-1")

    def read(page):
        for container, marks in CHARTS.items():
            assert page.locator(f"{container} {marks}").count() > 0, container
        globex_bar = page.locator("#fd-margin-customer g.fd-bar[data-key='globex']")
        return {
            "states": states(page),
            "globex margin": globex_bar.locator(".fd-value").text_content(),
            "globex negative": "fd-negative" in globex_bar.get_attribute("class"),
            "revenue total": page.locator("#fd-totals [data-field='revenue'] dd").text_content(),
            "frontier point": page.locator(
                f"#fd-cost-tier g.fd-series[data-tier='frontier'] circle[data-day='{frontier['day'][:10]}']"
            ).get_attribute("data-value"),
            "spare idle": page.locator("#fd-idle g.fd-bar[data-key='iad-h100-spare'] .fd-value").text_content(),
            "iad emissions": page.locator("#fd-emissions g.fd-bar[data-key='iad-1']").get_attribute("data-value"),
            "iad emissions shown": page.locator("#fd-emissions g.fd-bar[data-key='iad-1'] .fd-value").text_content(),
            "alerts": page.locator("#fd-alerts tr.fd-alert").all_text_contents(),
            "chart names": page.locator("svg[role='img'] > title").all_text_contents(),
            "formatted": page.evaluate("""() => ["-1234.565", "0.004", "-0.004", "1234567.5", "12"]
                .map((text) => window.financeDashboard.formatMoney(text))"""),
            "sum": page.evaluate("() => window.financeDashboard.addDecimals('123.29', '-0.005')"),
        }

    shown = in_chromium(live_server, client, period_query(), read, screenshot=ARTIFACTS / "dashboard.png")

    assert shown["errors"] == []
    assert shown["states"] == ["ready"] * 6
    assert Decimal(globex["gross_margin"]) < 0
    assert shown["globex margin"] == money(globex["gross_margin"])
    assert shown["globex negative"]
    assert shown["revenue total"] == money(by_customer["totals"]["revenue"])
    assert shown["frontier point"] == frontier["cost_per_million_tokens"]
    assert shown["spare idle"] == money(spare["idle_cost"])
    assert Decimal(iad["g_co2e_per_million_tokens"]) > 0
    assert shown["iad emissions"] == iad["g_co2e_per_million_tokens"]
    assert shown["iad emissions shown"] == \
        f"{Decimal(iad['g_co2e_per_million_tokens']).quantize(Decimal('0.1'), ROUND_HALF_UP):,} g"
    assert len(shown["alerts"]) == len(alerts["results"]) > 0
    assert any("globex" in text and "nano" in text for text in shown["alerts"])
    assert shown["chart names"] == ["Cost per 1M tokens by model tier, per day", "Hardware vs power share by datacenter",
                                    "Gross margin by customer", "Gross margin by model",
                                    "Emissions per 1M tokens by datacenter", "Idle cost by cluster"]
    assert shown["formatted"] == ["-$1,234.57", "$0.00", "$0.00", "$1,234,567.50", "$12.00"]
    assert shown["sum"] == "123.285"


@pytest.mark.django_db(transaction=True)
def test_a_period_without_usage_says_so(live_server):
    client = logged_in(staff_user(FINANCE_VIEWER))

    shown = in_chromium(live_server, client, period_query(), lambda page: {
        "states": states(page),
        "messages": page.locator(".fd-chart .fd-status").all_text_contents(),
        "alerts": page.locator("#fd-alerts").text_content(),
        "revenue total": page.locator("#fd-totals [data-field='revenue'] dd").text_content(),
    })

    assert shown["errors"] == []
    assert shown["states"] == ["ready"] * 6
    assert shown["messages"][0] == "No allocated usage in this period."
    assert "No margin alerts in this period." in shown["alerts"]
    assert shown["revenue total"] == "$0.00"


@pytest.mark.django_db(transaction=True)
def test_an_api_refusal_is_shown_in_place_of_each_chart(live_server):
    client = logged_in(staff_user(FINANCE_VIEWER))

    shown = in_chromium(live_server, client, "start=2025-01-01&end=2026-10-01", lambda page: {  # > 400 days
        "states": states(page),
        "messages": page.locator(".fd-chart .fd-error").all_text_contents(),
    })

    assert shown["states"] == ["error"] * 6
    assert all(message.startswith("The API answered 422") for message in shown["messages"])
