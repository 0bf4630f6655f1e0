"""The demo's pricing step: list prices, a mid-month price change, two contracts, a
credit grant, and the resulting invoice previews (DESIGN.md §2–§3)."""

from datetime import datetime, timedelta
from decimal import Decimal

# USD per 1M tokens, standard service tier (issue #3; the newer classes from "Every token a
# provider bills"). Cache writes cost more than plain input, as providers charge them: the
# 5-minute lifetime 1.25 × input, the 1-hour one 2 × input. Audio costs more to serve than
# text: audio input 8 × text input, audio output 4 × text output (realtime speech models'
# ratios). Reasoning tokens are output and priced as output.
LIST_PRICES = {
    "frontier": {"input": "2.50", "cached_input": "0.25", "cache_write": "3.125", "cache_write_long": "5.00",
                 "audio_input": "20.00", "output": "15.00", "audio_output": "60.00"},
    "mini": {"input": "0.75", "cached_input": "0.075", "cache_write": "0.9375", "cache_write_long": "1.50",
             "audio_input": "6.00", "output": "4.50", "audio_output": "18.00"},
    "nano": {"input": "0.20", "cached_input": "0.02", "cache_write": "0.25", "cache_write_long": "0.40",
             "audio_input": "1.60", "output": "1.25", "audio_output": "5.00"},
}
# Batch and flex (best-effort capacity, may be slow or refused) are half of standard, priority
# double; provisioned usage is covered by its reservation's fee, so its tokens are priced 0.
SERVICE_TIER_FACTORS = {"standard": Decimal(1), "batch": Decimal("0.5"), "priority": Decimal(2),
                        "flex": Decimal("0.5"), "provisioned": Decimal(0)}
MID_MONTH_CHANGE = ("frontier", "output", "12.00")  # a price cut from the 15th on


def price_list(*, change: tuple[str, str, str] | None = None) -> list[dict]:
    prices = []
    for tier, classes in LIST_PRICES.items():
        for token_class, price in classes.items():
            if change and change[:2] == (tier, token_class):
                price = change[2]
            for service_tier, factor in SERVICE_TIER_FACTORS.items():
                prices.append({"model_tier": tier, "service_tier": service_tier, "token_class": token_class,
                               "unit_price": Decimal(price) * factor})
    return prices


def pricing_set_up(*, start: datetime, end: datetime, as_of: datetime) -> tuple[datetime, list[str]]:
    """Publish the price books, sign the contracts, grant credit, reserve and rent capacity.
    Returns the change instant and the customers with capacity."""
    from billing.services.contracts import contract_put
    from billing.services.credits import credit_grant
    from billing.services.price_books import price_book_create
    from scripts.demo_capacity import capacity_set_up

    change_at = start + timedelta(days=14)
    price_book_create(effective_from=start - timedelta(days=365), currency="USD", prices=price_list(),
                      note="list prices", actor="demo", as_of=as_of)
    price_book_create(effective_from=change_at, currency="USD", prices=price_list(change=MID_MONTH_CHANGE),
                      note="frontier output price cut", actor="demo", as_of=as_of)
    contract_put(customer_id="acme", effective_from=start - timedelta(days=90), effective_to=None,
                 discount_percent=Decimal("10.00"), monthly_minimum=Decimal("2500.00"), unit_price_overrides=[],
                 volume_tiers=[], actor="demo")
    contract_put(customer_id="globex", effective_from=start, effective_to=None, discount_percent=Decimal(0),
                 monthly_minimum=None, unit_price_overrides=[], actor="demo", volume_tiers=[
                     {"model_tier": "frontier", "service_tier": "standard", "token_class": "input",
                      "bands": [{"up_to": 10_000_000, "unit_price": Decimal("2.50")},
                                {"up_to": None, "unit_price": Decimal("2.00")}]}])
    credit_grant(customer_id="acme", amount=Decimal("500.00"), reason="demo prepaid credit", actor="demo",
                 as_of=as_of)
    return change_at, capacity_set_up(start=start, end=end, as_of=as_of)


def invoices_print(*, customers: list[str], start: datetime, end: datetime, as_of: datetime) -> None:
    from billing.rating.money import money_text as money
    from billing.rating.money import unit_price_text
    from billing.selectors import upcoming_invoice

    change_at, with_capacity = pricing_set_up(start=start, end=end, as_of=as_of)
    print(f"price books: list prices; from {change_at:%Y-%m-%d %H:%M} UTC frontier output "
          f"{LIST_PRICES['frontier']['output']} → {MID_MONTH_CHANGE[2]} per 1M; batch and flex ½, priority ×2, "
          "provisioned 0 (the reservation pays)")
    print("  token classes: cache write 5 min 1.25 × input, 1 h 2 × input; audio input 8 × input, audio output "
          "4 × output; reasoning priced as output")
    print("contracts: acme 10% discount, 2,500.00 monthly minimum, 500.00 prepaid credit; "
          "globex frontier standard input 2.50 up to 10M tokens, 2.00 beyond")
    previews = {c: upcoming_invoice(customer_id=c, as_of=end - timedelta(hours=1))[2] for c in customers}
    for customer_id in ("acme", "globex", *with_capacity):
        print(f"\n-- invoice preview {start:%Y-%m} for {customer_id} (GET /customers/{customer_id}/upcoming-invoice "
              "for that period)")
        print(f"{'kind':10} {'model':13} {'service':9} {'class':16} {'days':11} {'tokens':>13} {'unit price':>11} "
              f"{'amount':>11}")
        for line in previews[customer_id].lines:
            tokens = f"{line.tokens:,}" if line.tokens else ""
            days = f"{line.usage_start:%m-%d}–{line.usage_end - timedelta(microseconds=1):%m-%d}" \
                if line.usage_start else ""
            print(f"{line.kind:10} {line.model:13} {line.service_tier:9} {line.token_class:16} {days:11} "
                  f"{tokens:>13} {unit_price_text(line.unit_price) or '':>11} {money(line.amount):>11}")
            if line.kind == "capacity":
                print(f"{'':10} {line.description}")
        print(f"{'total':>89} {money(previews[customer_id].total):>11}")
    print(f"\n-- every customer, {start:%Y-%m}")
    print(f"{'customer':10} {'usage':>11} {'capacity':>11} {'discount':>10} {'minimum':>10} {'credits':>10} "
          f"{'total':>11}")
    for customer_id, rated in previews.items():
        by_kind = {kind: sum((l.amount for l in rated.lines if l.kind == kind), Decimal(0))
                   for kind in ("usage", "capacity", "discount", "minimum", "credits")}
        print(f"{customer_id:10} {money(by_kind['usage']):>11} {money(by_kind['capacity']):>11} "
              f"{money(by_kind['discount']):>10} {money(by_kind['minimum']):>10} {money(by_kind['credits']):>10} "
              f"{money(rated.total):>11}")
    print("capacity: reservations and rentals by the hour, after usage and before the discount (never discounted)")
