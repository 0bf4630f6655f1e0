"""Reads for billing: what the rating engine needs, gathered from the database."""

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import OuterRef, Q, Subquery, Sum

from billing.models import Contract, CreditEntry, PriceBook, Rental, Reservation
from billing.rating import (
    Band, CapacityTerm, ContractTerms, PriceBookVersion, PriceMissing, PriceSchedule, Quantity, RatedInvoice,
    TierAssignment, invoice_rate, usage_amount,
)
from metering import selectors as metering_selectors
from metering.token_classes import FIELDS as TOKEN_FIELDS
from metering.token_classes import priced_of_row


def month_bounds(moment: datetime) -> tuple[datetime, datetime]:
    """The calendar month (UTC) holding `moment`, as [start, end)."""
    start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def price_schedule() -> PriceSchedule:
    """Every model's tier history and the published price book versions in force: at each
    instant only the newest revision, since a correction supersedes the version it corrects."""
    tiers = tuple(TierAssignment(c.model.name, c.tier, c.effective_from)
                  for c in metering_selectors.model_tier_history())
    newest = (PriceBook.objects.filter(status=PriceBook.Status.PUBLISHED)
              .order_by("effective_from", "-revision").distinct("effective_from"))  # DISTINCT ON: the first
    books = tuple(
        PriceBookVersion(book.effective_from, {p.key: p.unit_price for p in book.prices.all()})
        for book in newest.prefetch_related("prices")
    )
    return PriceSchedule(tiers=tiers, books=books)


def published_price_books():
    """Published versions with their prices and the id of the published correction of each
    (`superseded_by_id`)."""
    corrections = PriceBook.objects.filter(status=PriceBook.Status.PUBLISHED, corrects=OuterRef("pk"))
    return (PriceBook.objects.filter(status=PriceBook.Status.PUBLISHED).prefetch_related("prices")
            .annotate(superseded_by_id=Subquery(corrections.values("pk")[:1])))


@dataclass(frozen=True)
class RentalTerm:
    """A cluster rented to a customer over [starts_at, ends_at) (ends_at None: open)."""

    cluster: str
    customer_id: str
    starts_at: datetime
    ends_at: datetime | None
    accelerator_hour_price: Decimal

    def covers(self, hour: datetime) -> bool:
        return self.starts_at <= hour and (self.ends_at is None or hour < self.ends_at)


def rentals_overlapping(*, start: datetime, end: datetime) -> list[RentalTerm]:
    """Every rental whose term overlaps [start, end), for cost allocation and invoicing."""
    rentals = (Rental.objects.filter(starts_at__lt=end).filter(Q(ends_at__isnull=True) | Q(ends_at__gt=start))
               .select_related("cluster", "customer").order_by("cluster__name", "starts_at"))
    return [RentalTerm(r.cluster.name, r.customer.customer_id, r.starts_at, r.ends_at, r.accelerator_hour_price)
            for r in rentals]


def _covered(alias: str, hour: str) -> str:
    """SQL: the row `alias` (customer_id, cluster) at `hour` is usage its customer served from
    a cluster it rented in that hour: metered and shown, never priced (DESIGN.md §2, the
    rental covers it). Rating, the usage recorded as billed and late usage all leave it out
    the same way, so it is never billed later as late usage either."""
    return f"""EXISTS (
        SELECT 1 FROM billing_rental rt
        JOIN metering_customer rc ON rc.id = rt.customer_id
        JOIN infra_inventory_cluster rcl ON rcl.id = rt.cluster_id
        WHERE rc.customer_id = {alias}.customer_id AND rcl.name = {alias}.cluster
          AND rt.starts_at <= {hour} AND (rt.ends_at IS NULL OR {hour} < rt.ends_at))"""


def billable_hourly_sums(*, customer_ids: list[str] | None, start: datetime, end: datetime) -> list[tuple]:
    """(customer_id, model, service_tier, hour, then the sums of token_classes.FIELDS) of the
    hourly rollups over [start, end), summed over regions and clusters, without the usage
    rentals cover: what an invoice of [start, end) rates and records as billed."""
    customer_filter = "AND r.customer_id = ANY(%(customers)s)" if customer_ids is not None else ""
    sql = f"""
        SELECT r.customer_id, r.model, r.service_tier, r.hour, {_sums("r", cast=True)}
        FROM metering_hourly_rollup r
        WHERE r.hour >= %(start)s AND r.hour < %(end)s {customer_filter} AND NOT {_covered("r", "r.hour")}
        GROUP BY 1, 2, 3, 4
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"start": start, "end": end, "customers": customer_ids})
        return cursor.fetchall()


def adjustment_billable_hourly_sums(*, customer_id: str, start: datetime, end: datetime, after_id: int
                                    ) -> list[tuple]:
    """Like `billable_hourly_sums`, of the differences the customer's usage adjustments
    numbered after `after_id` make to usage served in [start, end), without adjustments of
    usage a rental covers (that usage was never billed, so its corrections are not re-rated)."""
    hour = "date_trunc('hour', a.occurred_at, 'UTC')"
    sql = f"""
        SELECT a.customer_id, a.model, a.service_tier, {hour} AS hour, {_sums("a", cast=True)}
        FROM metering_usage_adjustment a
        WHERE a.customer_id = %(customer)s AND a.occurred_at >= %(start)s AND a.occurred_at < %(end)s
          AND a.id > %(after)s AND NOT {_covered("a", hour)}
        GROUP BY 1, 2, 3, 4
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"customer": customer_id, "start": start, "end": end, "after": after_id})
        return cursor.fetchall()


def _rental_covered_tokens(*, customer_ids: list[str] | None, start: datetime, end: datetime) -> dict[int, int]:
    """Tokens (input + output) each rental covers in [start, end), by rental id."""
    sql = """
        SELECT rt.id, sum(r.input_tokens + r.output_tokens)::bigint
        FROM billing_rental rt
        JOIN metering_customer rc ON rc.id = rt.customer_id
        JOIN infra_inventory_cluster rcl ON rcl.id = rt.cluster_id
        JOIN metering_hourly_rollup r ON r.customer_id = rc.customer_id AND r.cluster = rcl.name
             AND r.hour >= rt.starts_at AND (rt.ends_at IS NULL OR r.hour < rt.ends_at)
        WHERE r.hour >= %(start)s AND r.hour < %(end)s
          AND (%(customers)s::text[] IS NULL OR rc.customer_id = ANY(%(customers)s))
        GROUP BY 1
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"start": start, "end": end, "customers": customer_ids})
        return dict(cursor.fetchall())


def capacity_terms(*, customer_ids: list[str] | None, start: datetime, end: datetime
                   ) -> dict[str, list[CapacityTerm]]:
    """Every reservation and rental overlapping [start, end), per customer."""
    overlapping = Q(starts_at__lt=end) & (Q(ends_at__isnull=True) | Q(ends_at__gt=start))
    reservations = Reservation.objects.filter(overlapping).select_related("customer", "cluster")
    rentals = Rental.objects.filter(overlapping).select_related("customer", "cluster")
    if customer_ids is not None:
        reservations = reservations.filter(customer__customer_id__in=customer_ids)
        rentals = rentals.filter(customer__customer_id__in=customer_ids)
    covered = _rental_covered_tokens(customer_ids=customer_ids, start=start, end=end)
    terms: dict[str, list[CapacityTerm]] = defaultdict(list)
    for r in reservations:
        terms[r.customer.customer_id].append(CapacityTerm(
            "reservation", r.model_tier, r.units, r.unit_hour_price, r.starts_at, r.ends_at,
            cluster=r.cluster.name if r.cluster else ""))
    for r in rentals:
        terms[r.customer.customer_id].append(CapacityTerm(
            "rental", r.cluster.name, r.accelerator_count, r.accelerator_hour_price, r.starts_at, r.ends_at,
            cluster=r.cluster.name, covered_tokens=covered.get(r.pk, 0)))
    return dict(terms)


def _period_contracts(start: datetime, end: datetime):
    """Contract versions overlapping [start, end), those in force at `start` first."""
    return (
        Contract.objects.filter(effective_from__lt=end)
        .filter(Q(effective_to__isnull=True) | Q(effective_to__gt=start))
        .select_related("customer").prefetch_related("unit_price_overrides", "volume_bands")
        .order_by("customer_id", "effective_from")
    )


def contract_for_period(*, customer_id: str, start: datetime, end: datetime) -> Contract | None:
    """The version that governs a period: the one in force at its start, else the first
    one that starts within it (versions never overlap, so at most one is in force)."""
    return _period_contracts(start, end).filter(customer__customer_id=customer_id).first()


def terms_for_customers(*, customer_ids: list[str] | None, start: datetime, end: datetime) -> dict[str, ContractTerms]:
    """The governing terms of every customer with a contract in the period."""
    contracts = _period_contracts(start, end)
    if customer_ids is not None:
        contracts = contracts.filter(customer__customer_id__in=customer_ids)
    terms: dict[str, ContractTerms] = {}
    for contract in contracts:  # earliest first: the one in force at `start`, if any
        terms.setdefault(contract.customer.customer_id, contract_terms(contract))
    return terms


def contract_terms(contract: Contract | None) -> ContractTerms:
    if contract is None:
        return ContractTerms()
    bands: dict[tuple, list[Band]] = defaultdict(list)
    for band in contract.volume_bands.all():  # ordered by key, then bound (open-ended last)
        bands[band.key].append(Band(band.tokens_up_to, band.unit_price))
    return ContractTerms(
        discount_percent=contract.discount_percent,
        monthly_minimum=contract.monthly_minimum,
        unit_price_overrides={p.key: p.unit_price for p in contract.unit_price_overrides.all()},
        volume_tiers={key: tuple(b) for key, b in bands.items()},
    )


def credit_balances(*, customer_ids: list[str] | None) -> dict[str, Decimal]:
    entries = CreditEntry.objects.all()
    if customer_ids is not None:
        entries = entries.filter(customer__customer_id__in=customer_ids)
    return dict(entries.values("customer__customer_id").annotate(total=Sum("amount"))
                .values_list("customer__customer_id", "total"))


def credit_balance(*, customer_id: str) -> Decimal:
    return credit_balances(customer_ids=[customer_id]).get(customer_id, Decimal(0))


def quantities_from_rows(rows, *, boundaries: list[datetime] = (), end: datetime | None = None
                         ) -> dict[str, list[Quantity]]:
    """Hourly rows (customer, model, service tier, hour, then the sums of token_classes.FIELDS)
    → per-customer quantities of the priced token classes, summed over each stretch
    [boundary, next boundary or `end`) (boundaries are instants where a tier or price may
    change), so that each sum is priced once. Without boundaries, each row stays one hour.
    A class with no tokens gives no quantity (and needs no price)."""
    starts = sorted(boundaries)
    sums: dict[tuple, list[int]] = defaultdict(lambda: [0] * len(TOKEN_FIELDS))
    for customer_id, model, service_tier, hour, *tokens in rows:
        index = bisect_right(starts, hour) - 1
        if index < 0:
            segment = (hour, None)
        else:
            segment = (starts[index], starts[index + 1] if index + 1 < len(starts) else end)
        total = sums[(customer_id, model, service_tier, segment)]
        for position, count in enumerate(tokens):
            total[position] += count
    by_customer: dict[str, list[Quantity]] = defaultdict(list)
    for (customer_id, model, service_tier, (segment, until)), tokens in sums.items():
        by_customer[customer_id].extend(
            Quantity(model, service_tier, token_class, segment, int(count), until)
            for token_class, count in priced_of_row(tokens).items() if count
        )
    return by_customer


def segment_boundaries(schedule: PriceSchedule, start: datetime, end: datetime) -> list[datetime]:
    """Every month start in [start, end) and every tier or price change within it."""
    months, month = [], month_bounds(start)[0]
    while month < end:
        months.append(month)
        month = month_bounds(month)[1]
    return sorted({*months, *schedule.boundaries(start, end)})


def _sums(alias: str, *, cast: bool = False) -> str:
    return ", ".join(f"sum({alias}.{name}){'::bigint' if cast else ''} AS {name}" for name in TOKEN_FIELDS)


LATE_USAGE_SQL = f"""
WITH closed AS (
    SELECT c.customer_id, coalesce(i.adjustments_through, 0) AS adjustments_through,
           (i.period::timestamp AT TIME ZONE 'UTC') AS start_at,
           ((i.period + interval '1 month')::timestamp AT TIME ZONE 'UTC') AS end_at
    FROM billing_invoice i JOIN metering_customer c ON c.id = i.customer_id
    WHERE i.status IN ('finalized', 'paid') AND i.period < %(period)s AND i.period >= %(horizon)s
      AND (%(customers)s::text[] IS NULL OR c.customer_id = ANY(%(customers)s))
      AND NOT EXISTS (  -- an earlier open invoice takes this late usage first
          SELECT 1 FROM billing_invoice d
          WHERE d.customer_id = i.customer_id AND d.status = 'draft' AND d.period > i.period AND d.period < %(period)s)
), used AS (
    SELECT r.customer_id, r.model, r.service_tier, r.hour, {_sums("r")}
    FROM metering_hourly_rollup r
    JOIN closed ON closed.customer_id = r.customer_id AND r.hour >= closed.start_at AND r.hour < closed.end_at
    WHERE NOT {_covered("r", "r.hour")}  -- never billed, never late
    GROUP BY 1, 2, 3, 4
), billed AS (
    SELECT b.customer_id, b.model, b.service_tier, b.hour, {_sums("b")}
    FROM billing_billedusage b
    JOIN billing_invoice inv ON inv.id = b.invoice_id AND inv.status IN ('finalized', 'paid')
    JOIN closed ON closed.customer_id = b.customer_id AND b.hour >= closed.start_at AND b.hour < closed.end_at
    GROUP BY 1, 2, 3, 4
), corrected AS (  -- adjustments after finalization: billed by re-rating, never as late usage
    SELECT a.customer_id, a.model, a.service_tier, date_trunc('hour', a.occurred_at, 'UTC') AS hour, {_sums("a")}
    FROM metering_usage_adjustment a
    JOIN closed ON closed.customer_id = a.customer_id AND a.occurred_at >= closed.start_at
               AND a.occurred_at < closed.end_at AND a.id > closed.adjustments_through
    WHERE NOT {_covered("a", "date_trunc('hour', a.occurred_at, 'UTC')")}
    GROUP BY 1, 2, 3, 4
), late AS (
    SELECT customer_id, model, service_tier, hour,
           {", ".join(f"(coalesce(u.{name}, 0) - coalesce(b.{name}, 0) - coalesce(c.{name}, 0))::bigint AS {name}"
                      for name in TOKEN_FIELDS)}
    FROM used u FULL JOIN billed b USING (customer_id, model, service_tier, hour)
    FULL JOIN corrected c USING (customer_id, model, service_tier, hour)
)
SELECT customer_id, model, service_tier, hour, {", ".join(TOKEN_FIELDS)} FROM late
WHERE ({", ".join(TOKEN_FIELDS)}) IS DISTINCT FROM ({", ".join("0" for _ in TOKEN_FIELDS)})
"""


def late_usage_rows(*, customer_ids: list[str] | None, period_start: datetime) -> list[tuple]:
    """Hourly usage in periods already finalized (or paid) that their invoices did not
    bill: rollups minus billed usage, minus what adjustments recorded after finalization
    changed (re-rating bills those), leaving out the usage rentals cover as rating does.
    Only periods within three months can still receive events (the lateness limit is 35 days)."""
    horizon = month_bounds(period_start - timedelta(days=92))[0]
    with connection.cursor() as cursor:
        cursor.execute(LATE_USAGE_SQL, {"period": period_start.date(), "horizon": horizon.date(),
                                        "customers": customer_ids})
        return cursor.fetchall()


USAGE_GROUP_KEYS = ("model", "model_tier", "service_tier", "region", "cluster", "hour", "day")
USAGE_SUMS = ("events", *TOKEN_FIELDS)


def _group_value(key: str, row: dict, schedule: PriceSchedule):
    if key == "model_tier":
        try:
            return schedule.tier_at(row["model"], row["hour"])
        except PriceMissing:
            return None
    if key == "day":
        return row["hour"].replace(hour=0)
    return row[key]


def usage_report(*, customer_id: str | None, start: datetime, end: datetime, group_by: list[str]) -> list[dict]:
    """Usage rows for GET /usage: token sums per customer and group, and `amount` rated at
    the unit prices in force (book and contract overrides), before contract-level discounts.
    `amount` is null where some usage in the row has no price. Usage a customer served from a
    cluster it rents is counted but not priced (the rental covers it)."""
    schedule = price_schedule()
    rentals: dict[tuple[str, str], list[RentalTerm]] = defaultdict(list)
    for rental in rentals_overlapping(start=start, end=end):
        rentals[(rental.customer_id, rental.cluster)].append(rental)
    groups: dict[tuple, dict] = {}
    for row in metering_selectors.usage_hourly_rows(customer_id=customer_id, start=start, end=end):
        key = (row["customer_id"], *(_group_value(k, row, schedule) for k in group_by))
        group = groups.setdefault(key, {**{f: 0 for f in USAGE_SUMS}, "quantities": []})
        for field in USAGE_SUMS:
            group[field] += row[field]
        if any(r.covers(row["hour"]) for r in rentals.get((row["customer_id"], row["cluster"]), ())):
            continue  # served from a cluster the customer rents: the rental covers it
        group["quantities"].extend(quantities_from_rows([(
            row["customer_id"], row["model"], row["service_tier"], row["hour"],
            *(row[name] for name in TOKEN_FIELDS))])[row["customer_id"]])
    terms = terms_for_customers(customer_ids=None if customer_id is None else [customer_id], start=start, end=end)
    report = []
    for key in sorted(groups, key=lambda k: tuple("" if v is None else str(v) for v in k)):
        group = groups[key]
        try:
            amount = usage_amount(usage=group.pop("quantities"), schedule=schedule,
                                  terms=terms.get(key[0], ContractTerms()))
        except PriceMissing:
            amount = None
        report.append({"customer_id": key[0], **dict(zip(group_by, key[1:])), **group, "amount": amount})
    return report


@dataclass(frozen=True)
class PeriodUsage:
    """Everything an invoice of one period rates: own hourly usage and late hourly usage
    (without the usage rentals cover)."""

    own: list[tuple]
    late: list[tuple]


def period_usage(*, customer_ids: list[str] | None, start: datetime, end: datetime) -> PeriodUsage:
    return PeriodUsage(
        own=billable_hourly_sums(customer_ids=customer_ids, start=start, end=end),
        late=late_usage_rows(customer_ids=customer_ids, period_start=start),
    )


def period_rate(*, customer_ids: list[str] | None, start: datetime, end: datetime,
                usage: PeriodUsage | None = None, with_credits: bool = True) -> dict[str, RatedInvoice]:
    """Rate [start, end) for many customers at once: a query each for usage, late usage,
    contracts, reservations and rentals, and credit balances, then the rating engine per customer with usage or a
    contract. `usage` may be given (a finalization rates exactly what it snapshots; a
    re-rating what was billed, corrected); without credits, no prepaid credit is applied."""
    schedule = price_schedule()
    usage = usage or period_usage(customer_ids=customer_ids, start=start, end=end)
    own = quantities_from_rows(usage.own, boundaries=segment_boundaries(schedule, start, end), end=end)
    late_start = month_bounds(min((row[3] for row in usage.late), default=start))[0]
    late = quantities_from_rows(usage.late, boundaries=segment_boundaries(schedule, late_start, start), end=start)
    terms = terms_for_customers(customer_ids=customer_ids, start=start, end=end)
    capacity = capacity_terms(customer_ids=customer_ids, start=start, end=end)
    balances = credit_balances(customer_ids=customer_ids) if with_credits else {}
    return {
        customer_id: invoice_rate(usage=own.get(customer_id, []), late_usage=late.get(customer_id, []),
                                  schedule=schedule, terms=terms.get(customer_id, ContractTerms()),
                                  credit_balance=balances.get(customer_id, Decimal(0)),
                                  capacity=capacity.get(customer_id, ()), period=(start, end))
        for customer_id in sorted(own.keys() | late.keys() | terms.keys() | capacity.keys() | set(customer_ids or ()))
    }


def upcoming_invoice(*, customer_id: str, as_of: datetime) -> tuple[datetime, datetime, RatedInvoice]:
    """What the invoice of the period holding `as_of` would be right now."""
    start, end = month_bounds(as_of)
    return start, end, period_rate(customer_ids=[customer_id], start=start, end=end)[customer_id]
