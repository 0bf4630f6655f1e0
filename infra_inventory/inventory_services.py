"""Writes to the fleet inventory and to measured power (DESIGN.md §4).

- Names are unique, one power contract per datacenter and instant, one deployment per
  model, region and cluster: creating one that exists is a conflict with the current
  state (409), decided by the unique constraints, so two racing requests cannot both win.
- Power readings are recorded all or nothing: when any reading of a batch is bad, none is
  written and each bad one is reported by its index with an error per field. The API and
  the admin's CSV import both go through `power_readings_record`, so they keep one set of
  rules.
- A reading is idempotent per (cluster, hour): the same value again changes nothing; a new
  value replaces the old one and gets `received_at = as_of`, which is how the allocator
  learns the hour must be allocated again (services.hours_stale).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import psycopg
from django.db import IntegrityError, connection, transaction
from django.utils.dateparse import parse_datetime

from config.api import YEARS_TEXT, DomainError, PayloadTooLarge, is_in_years, is_on_the_hour
from infra_inventory.allocation import TOKEN_CLASSES, TokenWeights
from infra_inventory.models import (
    Cluster, Datacenter, Deployment, GridIntensity, HardwareSku, Lease, PowerContract, PowerReading,
)

READINGS_MAX = 10_000
READING_FIELDS = ("cluster", "hour", "it_kwh")
KWH_PLACES = 4
KWH_LIMIT = Decimal(10) ** 10  # it_kwh is numeric(14, 4)


class InventoryConflict(DomainError):
    code = "already_exists"
    status = 409
    title = "Conflicts with what already exists"


class LeaseOfOwnedCluster(DomainError):
    code = "lease_of_owned_cluster"
    status = 422
    title = "Only a leased cluster has a lease"


class PowerReadingsTooMany(PayloadTooLarge):
    code = "power_readings_too_many"


class PowerReadingsRejected(DomainError):
    code = "power_readings_rejected"
    status = 422
    title = "Power readings rejected"


def _insert(instance, *, conflict: InventoryConflict):
    """Save a new row; a unique violation becomes `conflict` (a check violation is a bug
    of the caller's validation and stays an error)."""
    try:
        with transaction.atomic():
            instance.save(force_insert=True)
    except IntegrityError as exc:
        if not isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
            raise
        raise conflict from exc
    return instance


def _name_taken(kind: str, name: str) -> InventoryConflict:
    return InventoryConflict(f"A {kind} named '{name}' already exists.", errors={"name": [f"'{name}' is taken."]})


# --- inventory ------------------------------------------------------------------------


@transaction.atomic
def hardware_sku_create(*, name: str, vendor: str, accelerator: str, unit_cost: Decimal, amortization_months: int,
                        board_watts: int, token_weights: TokenWeights | None = None,
                        embodied_kg_co2e: Decimal = Decimal(0)) -> HardwareSku:
    weights = token_weights or TokenWeights()  # DESIGN.md §4's 1, 0.1, 4, and the newer classes' defaults
    sku = HardwareSku(name=name, vendor=vendor, accelerator=accelerator, unit_cost=unit_cost,
                      amortization_months=amortization_months, board_watts=board_watts,
                      embodied_kg_co2e=embodied_kg_co2e,
                      **{f"weight_{c}": getattr(weights, c) for c in TOKEN_CLASSES})
    return _insert(sku, conflict=_name_taken("hardware SKU", name))


@transaction.atomic
def datacenter_create(*, name: str, region: str, pue: Decimal) -> Datacenter:
    return _insert(Datacenter(name=name, region=region, pue=pue), conflict=_name_taken("datacenter", name))


@transaction.atomic
def power_contract_create(*, datacenter: Datacenter, effective_from: datetime, price_per_kwh: Decimal) -> PowerContract:
    """A new price from `effective_from` on; a contract already starting at that instant
    is not replaced (409): prices of allocated hours are history."""
    contract = PowerContract(datacenter=datacenter, effective_from=effective_from, price_per_kwh=price_per_kwh)
    conflict = InventoryConflict(
        f"{datacenter.name} already has a power contract from {effective_from.isoformat()}.",
        errors={"effective_from": ["A contract of this datacenter already starts at this instant."]})
    return _insert(contract, conflict=conflict)


@transaction.atomic
def cluster_create(*, name: str, datacenter: Datacenter, sku: HardwareSku, accelerator_count: int,
                   in_service_from: datetime, in_service_to: datetime | None = None,
                   ownership: str = Cluster.Ownership.OWNED) -> Cluster:
    cluster = Cluster(name=name, datacenter=datacenter, sku=sku, accelerator_count=accelerator_count,
                      in_service_from=in_service_from, in_service_to=in_service_to, ownership=ownership)
    return _insert(cluster, conflict=_name_taken("cluster", name))


@transaction.atomic
def lease_create(*, cluster: Cluster, provider: str, effective_from: datetime, price_per_accelerator_hour: Decimal,
                 includes_power: bool = False, committed_until: datetime | None = None) -> Lease:
    """A leased cluster's price from `effective_from` on, until its next lease. An owned
    cluster has no lease (422); a lease already starting at that instant is not replaced (409).
    Hours left unpriced that the new lease covers become stale (services.hours_stale)."""
    if cluster.ownership != Cluster.Ownership.LEASED:
        raise LeaseOfOwnedCluster(f"{cluster.name} is owned: its cost is its SKU's amortization.",
                                  errors={"cluster": [f"{cluster.name} is not a leased cluster."]})
    lease = Lease(cluster=cluster, provider=provider, effective_from=effective_from,
                  price_per_accelerator_hour=price_per_accelerator_hour, includes_power=includes_power,
                  committed_until=committed_until)
    conflict = InventoryConflict(f"{cluster.name} already has a lease from {effective_from.isoformat()}.",
                                 errors={"effective_from": ["A lease of this cluster already starts at this instant."]})
    return _insert(lease, conflict=conflict)


@transaction.atomic
def grid_intensity_create(*, datacenter: Datacenter, effective_from: datetime,
                          g_co2e_per_kwh: Decimal) -> GridIntensity:
    intensity = GridIntensity(datacenter=datacenter, effective_from=effective_from, g_co2e_per_kwh=g_co2e_per_kwh)
    conflict = InventoryConflict(
        f"{datacenter.name} already has a grid intensity from {effective_from.isoformat()}.",
        errors={"effective_from": ["An intensity of this datacenter already starts at this instant."]})
    return _insert(intensity, conflict=conflict)


@transaction.atomic
def deployment_create(*, model: str, region: str, cluster: Cluster, share: Decimal) -> Deployment:
    conflict = InventoryConflict(f"{model} in {region} is already deployed on {cluster.name}.",
                                 errors={"cluster": [f"{model} in {region} already has a share of {cluster.name}."]})
    return _insert(Deployment(model=model, region=region, cluster=cluster, share=share), conflict=conflict)


# --- power readings ----------------------------------------------------------------------


@dataclass(frozen=True)
class PowerReadingIn:
    cluster_id: int
    hour: datetime
    it_kwh: Decimal


@dataclass(frozen=True)
class ReadingsRecorded:
    received: int
    changed: int  # inserted, or replaced with another value


def _missing(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _hour_parse(value) -> tuple[datetime | None, str | None]:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = parse_datetime(value.strip())
        except ValueError:
            moment = None
        if moment is None:
            return None, "Not an RFC 3339 instant, e.g. 2026-11-01T13:00:00Z."
    else:
        return None, "Must be an RFC 3339 instant as a string."
    if not is_in_years(moment):
        return None, YEARS_TEXT
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)  # naive: UTC
    if not is_on_the_hour(moment):
        return None, "Must be on an hour boundary (UTC): a reading covers one whole hour."
    return moment, None


def _kwh_parse(value) -> tuple[Decimal | None, str | None]:
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        return None, 'Must be a decimal string, e.g. "812.5".'
    try:
        kwh = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        return None, 'Not a number; send a decimal string, e.g. "812.5".'
    if not kwh.is_finite():
        return None, "Must be a finite number."
    if kwh < 0:
        return None, "Must not be negative: energy measured in an hour is zero or more."
    if kwh != kwh.quantize(Decimal(1).scaleb(-KWH_PLACES)):
        return None, f"At most {KWH_PLACES} decimal places."
    if kwh >= KWH_LIMIT:
        return None, f"Must be less than {KWH_LIMIT:,} kWh."
    return kwh, None


def _reading_check(row, clusters: Mapping[str, Cluster]) -> tuple[PowerReadingIn | None, dict]:
    if not isinstance(row, Mapping):
        return None, {"non_field_errors": ["A reading is an object with cluster, hour and it_kwh."]}
    errors = {key: ["Unknown field; a reading has cluster, hour and it_kwh."] for key in row
              if key not in READING_FIELDS}
    errors |= {key: ["This field is required."] for key in READING_FIELDS if _missing(row.get(key))}
    cluster = hour = kwh = None
    if "cluster" not in errors:
        name = row["cluster"]
        cluster = clusters.get(name.strip()) if isinstance(name, str) else None
        if cluster is None:
            errors["cluster"] = [f"No cluster named '{name}'."]
    if "hour" not in errors:
        hour, error = _hour_parse(row["hour"])
        if error:
            errors["hour"] = [error]
    if "it_kwh" not in errors:
        kwh, error = _kwh_parse(row["it_kwh"])
        if error:
            errors["it_kwh"] = [error]
    if cluster is not None and hour is not None and not cluster.in_service(hour):
        until = cluster.in_service_to.isoformat() if cluster.in_service_to else "open-ended"
        errors["hour"] = [f"Outside the service of {cluster.name}: [{cluster.in_service_from.isoformat()}, {until})."]
    if errors:
        return None, errors
    return PowerReadingIn(cluster_id=cluster.pk, hour=hour, it_kwh=kwh), {}


def power_readings_check(rows: Sequence) -> tuple[list[PowerReadingIn], list[dict]]:
    """Raw readings (JSON objects or CSV rows: cluster name, hour, it_kwh) → the valid ones,
    one per cluster-hour, and `{"index", "errors"}` for each bad one. The same cluster-hour
    twice with the same value counts once; with two values it is an error."""
    names = {row["cluster"].strip() for row in rows if isinstance(row, Mapping) and isinstance(row.get("cluster"), str)}
    clusters = {c.name: c for c in Cluster.objects.filter(name__in=names)}
    valid: dict[tuple[int, datetime], tuple[int, PowerReadingIn]] = {}
    rejected = []
    for index, row in enumerate(rows):
        reading, errors = _reading_check(row, clusters)
        if reading is not None:
            seen = valid.setdefault((reading.cluster_id, reading.hour), (index, reading))
            if seen[1].it_kwh != reading.it_kwh:
                errors = {"it_kwh": [f"Reading {seen[0]} gives this cluster-hour another value ({seen[1].it_kwh})."]}
        if errors:
            rejected.append({"index": index, "errors": errors})
    return [reading for _, reading in valid.values()], rejected


UPSERT_SQL = """
WITH written AS (
    INSERT INTO {table} (cluster_id, hour, it_kwh, received_at)
    SELECT cluster_id, hour, it_kwh, %(as_of)s
    FROM unnest(%(cluster_ids)s::bigint[], %(hours)s::timestamptz[], %(kwh)s::numeric[]) AS r(cluster_id, hour, it_kwh)
    ORDER BY cluster_id, hour
    ON CONFLICT (cluster_id, hour) DO UPDATE SET it_kwh = EXCLUDED.it_kwh, received_at = EXCLUDED.received_at
    WHERE {table}.it_kwh IS DISTINCT FROM EXCLUDED.it_kwh
    RETURNING 1
)
SELECT count(*) FROM written
"""


def _readings_upsert(readings: list[PowerReadingIn], *, as_of: datetime) -> int:
    """One statement for the whole batch; rows go in (cluster, hour) order so two batches
    touching the same cluster-hours lock them in the same order."""
    if not readings:
        return 0
    sql = UPSERT_SQL.format(table=connection.ops.quote_name(PowerReading._meta.db_table))
    with connection.cursor() as cursor:
        cursor.execute(sql, {"as_of": as_of, "cluster_ids": [r.cluster_id for r in readings],
                             "hours": [r.hour for r in readings], "kwh": [r.it_kwh for r in readings]})
        return cursor.fetchone()[0]


@transaction.atomic
def power_readings_record(*, rows: Sequence, as_of: datetime) -> ReadingsRecorded:
    """Check every reading, then upsert them all, or none when any is bad."""
    if len(rows) > READINGS_MAX:
        raise PowerReadingsTooMany(f"At most {READINGS_MAX:,} readings per request, got {len(rows):,}.")
    if not rows:
        raise PowerReadingsRejected("No reading was sent.", errors={"readings": ["Send at least one reading."]})
    readings, rejected = power_readings_check(rows)
    if rejected:
        raise PowerReadingsRejected(
            f"{len(rejected)} of {len(rows)} readings were rejected; none was recorded.",
            errors={f"readings[{r['index']}].{field}": messages
                    for r in rejected for field, messages in r["errors"].items()},
            extra={"rejected": rejected})
    return ReadingsRecorded(received=len(rows), changed=_readings_upsert(readings, as_of=as_of))
