"""Rate one month for 10,000 customers from hourly rollups (issue #3 target: < 10 s).

    python bench/rating.py [--customers 10000] [--seed 3]

Builds, in the bench database, a month of sparse hourly rollups (3 models, 4 service
tiers, every token class: some hours write to the prompt cache, short or long, some carry
audio, frontier and mini reason; a customer is active in a random share of hours, heavier
customers more often),
the demo list prices with a mid-month price change, and contracts (discount, minimum,
graduated tiers) for 10% of customers. Then it times `billing.selectors.period_rate`
over all customers: one query for the usage summed per price segment, one for the
contracts, one for the credit balances, and the pure rating engine per customer. The
baseline in the same run is the bare SQL aggregation of the same rollups.
Prints JSON.
"""

import argparse
import json
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._setup import DATABASE_URL_DEFAULT, database_create  # noqa: E402

MODELS = [("gpt-5.4", "frontier"), ("gpt-5.4-mini", "mini"), ("gpt-5.4-nano", "nano")]
TIERS = [("standard", 0.74), ("batch", 0.15), ("priority", 0.05), ("flex", 0.06)]


def seed_rollups(*, customers: int, start: datetime, rng: random.Random) -> int:
    """COPY a month of sparse hourly rollups; returns the row count."""
    from django.db import connection

    columns = ("customer_id, model, service_tier, region, cluster, hour, events, input_tokens, "
               "cached_input_tokens, output_tokens, cache_write_tokens, cache_write_long_tokens, audio_input_tokens, "
               "audio_output_tokens, reasoning_tokens")
    rows = 0
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE metering_hourly_rollup")
        with cursor.cursor.copy(f"COPY metering_hourly_rollup ({columns}) FROM STDIN") as copy:
            for rank in range(customers):
                activity = min(0.6, 0.05 + 3 / (rank + 5))  # a long tail of small customers
                for hour in range(24 * 30):
                    if rng.random() > activity:
                        continue
                    model = rng.choices(MODELS, (0.45, 0.35, 0.2))[0][0]
                    tier = rng.choices(TIERS, [w for _, w in TIERS])[0][0]
                    events = rng.randint(1, 400)
                    input_tokens = events * rng.randint(200, 4000)
                    cached = input_tokens // rng.choice((1, 2, 4, 10)) // 2
                    output_tokens = events * rng.randint(50, 800)
                    # the other parts of the input stay within its uncached half: at most 1/4, 1/8, 1/10 of it
                    write = input_tokens // rng.choice((4, 8, 10**9))
                    write_long = input_tokens // rng.choice((8, 10**9))
                    audio_in, audio_out = (input_tokens // 10, output_tokens // 2) if rng.random() < 0.05 else (0, 0)
                    reasoning = output_tokens // rng.choice((2, 3, 10**9)) if model != "gpt-5.4-nano" else 0
                    copy.write_row((f"c{rank:05d}", model, tier, "us-east", "", start + timedelta(hours=hour),
                                    events, input_tokens, cached, output_tokens, write, write_long, audio_in,
                                    audio_out, reasoning))
                    rows += 1
    return rows


def seed_catalog_prices_contracts(*, customers: int, start: datetime, rng: random.Random) -> None:
    from billing.models import Contract, CreditEntry, PriceBook
    from billing.services.contracts import contract_put
    from billing.services.credits import credit_grant
    from billing.services.price_books import price_book_create
    from metering.models import CatalogModel, Customer
    from metering.services import catalog_model_create
    from scripts.demo_pricing import MID_MONTH_CHANGE, price_list

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE billing_pricebook, billing_price, billing_contract, billing_contractprice, "
                       "billing_contractvolumeband, billing_creditentry, metering_modeltierchange, "
                       "metering_catalogmodel CASCADE")
    Customer.objects.bulk_create([Customer(customer_id=f"c{r:05d}", name=f"Customer {r}") for r in range(customers)],
                                 ignore_conflicts=True)
    for name, tier in MODELS:
        catalog_model_create(name=name, tier=tier)
    now = datetime.now(UTC)
    price_book_create(effective_from=start - timedelta(days=365), currency="USD", prices=price_list(), actor="bench",
                      as_of=now)
    price_book_create(effective_from=start + timedelta(days=14), currency="USD",
                      prices=price_list(change=MID_MONTH_CHANGE), actor="bench", as_of=now)
    for rank in rng.sample(range(customers), customers // 10):
        contract_put(customer_id=f"c{rank:05d}", effective_from=start - timedelta(days=30), effective_to=None,
                     discount_percent=Decimal(rng.choice((0, 5, 10, 15))),
                     monthly_minimum=Decimal(rng.choice((0, 100, 1000))), unit_price_overrides=[],
                     volume_tiers=[{"model_tier": "frontier", "service_tier": "standard", "token_class": "input",
                                    "bands": [{"up_to": 50_000_000, "unit_price": Decimal("2.50")},
                                              {"up_to": None, "unit_price": Decimal("2.00")}]}],
                     actor="bench")
        credit_grant(customer_id=f"c{rank:05d}", amount=Decimal(50), reason="bench", actor="bench", as_of=now)
    assert PriceBook.objects.count() == 2 and Contract.objects.exists() and CreditEntry.objects.exists()
    assert CatalogModel.objects.count() == 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    database_url = os.environ.get("BENCH_DATABASE_URL", DATABASE_URL_DEFAULT)
    database_create(database_url)
    os.environ.update(DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="config.settings")
    import django
    from django.core.management import call_command
    from django.db import connection

    django.setup()
    call_command("migrate", verbosity=0)
    from billing.selectors import period_rate
    from metering.token_classes import FIELDS as TOKEN_FIELDS

    rng, start = random.Random(args.seed), datetime(2026, 10, 1, tzinfo=UTC)
    end = datetime(2026, 11, 1, tzinfo=UTC)
    seed_catalog_prices_contracts(customers=args.customers, start=start, rng=rng)
    rows = seed_rollups(customers=args.customers, start=start, rng=rng)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE metering_hourly_rollup")
        began = time.perf_counter()
        sums = ", ".join(f"sum({name})" for name in TOKEN_FIELDS)
        cursor.execute(f"SELECT customer_id, model, service_tier, {sums} FROM metering_hourly_rollup "
                       "WHERE hour >= %s AND hour < %s GROUP BY 1, 2, 3", [start, end])
        baseline_groups = len(cursor.fetchall())
        baseline_s = time.perf_counter() - began

    began = time.perf_counter()
    rated = period_rate(customer_ids=None, start=start, end=end)
    seconds = time.perf_counter() - began

    total = sum((r.total for r in rated.values()), Decimal(0))
    print(json.dumps({
        "benchmark": "rating", "customers": len(rated), "hourly_rollup_rows": rows,
        "lines": sum(len(r.lines) for r in rated.values()), "invoiced_total_usd": f"{total:.2f}",
        "seconds": round(seconds, 2), "customers_per_s": round(len(rated) / seconds),
        "baseline_sql_group_by_seconds": round(baseline_s, 2), "baseline_groups": baseline_groups,
        "target": {"seconds_below": 10, "met": seconds < 10},
    }, indent=2))


if __name__ == "__main__":
    main()
