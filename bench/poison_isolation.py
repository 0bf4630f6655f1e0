"""What one element Postgres refuses costs a batch: the ledger consumer's write of a
batch holding `--poison` such elements among `--events`, as transactions and seconds.

    .venv/bin/python -m bench.poison_isolation [--events 20000] [--poison 1] [--before]

The fault is a trigger on the claim table that raises for event_ids starting with
`poison-` (created for the run and dropped after it), so the elements pass the
validator and fail only in Postgres. Timed: `LedgerConsumer._write` on the checked
batch (the failed whole-batch transaction, then the isolation), without Kafka.
`--before` also times the former isolation, one transaction per element (minutes for
20,000). Every run writes fresh event_ids, so runs do not need an emptied ledger; the
database is tokenledger_bench (created and migrated if missing, `--database-url` for
another). Prints JSON.
"""

import argparse
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

from bench._setup import DATABASE_URL_DEFAULT, conditions, database_create, django_start, figures_print

FAULT_CREATE = """
CREATE OR REPLACE FUNCTION bench_poison_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.event_id LIKE 'poison-%' THEN RAISE EXCEPTION 'bench fault: event % refused', NEW.event_id; END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS bench_poison ON metering_usage_event_key;
CREATE TRIGGER bench_poison BEFORE INSERT ON metering_usage_event_key
    FOR EACH ROW EXECUTE FUNCTION bench_poison_refuse();
"""
FAULT_DROP = "DROP TRIGGER IF EXISTS bench_poison ON metering_usage_event_key; DROP FUNCTION IF EXISTS bench_poison_refuse()"


def batch_checked(*, events: int, poison: int, seed: int):
    """A checked batch as the consumer would hold it: `events` valid elements, `poison` of them refused by the fault."""
    from metering.consumer.steps import Accepted, Checked, Coordinates
    from metering.schemas import Catalog, Rules, event_validate

    rng, run = random.Random(seed), uuid.uuid4().hex[:10]
    poisoned = set(rng.sample(range(events), poison))
    now = datetime.now(UTC)
    rules = Rules(arrived_at=now, lateness=timedelta(days=35))
    catalog = Catalog(customers=frozenset({"bench-00"}), models=frozenset({"gpt-5.4"}))
    accepted = []
    for index in range(events):
        body = {"event_id": f"{'poison' if index in poisoned else 'evt'}-{run}-{index}", "customer_id": "bench-00",
                "model": "gpt-5.4", "timestamp": (now - timedelta(seconds=rng.randrange(86_400))).isoformat(),
                "input_tokens": rng.randrange(1, 4_000), "output_tokens": rng.randrange(1, 800)}
        verdict = event_validate(body, catalog=catalog, rules=rules)
        accepted.append(Accepted(verdict, Coordinates(f"bench-poison-{run}", 0, index, -1), now))
    return Checked(accepted, [])


def former_isolation(self, checked):
    """The isolation this replaced: every element of the failed batch in a transaction of its own."""
    from django.db import DatabaseError, InterfaceError, OperationalError, transaction

    from metering.adjustments import AdjustmentResult
    from metering.consumer import steps
    from metering.services import AppendResult, dead_letters_record, ledger_append

    total, rejected = AppendResult(), list(checked.rejected)
    for item in checked.accepted:
        self.stats.isolation_writes += 1
        try:
            with transaction.atomic():
                total += ledger_append(accepted=[item])
        except (OperationalError, InterfaceError):
            raise
        except DatabaseError as exc:
            rejected.append(steps.Rejected(
                "invalid", "write_failed", {"non_field_errors": [str(exc).strip()]}, item.source,
                item.received_at, item.event.customer_id.encode(), payload=item.event.payload(),
            ))
    dead_letters_record(rejected=rejected)
    return total, AdjustmentResult(), rejected


def timed_write(checked, *, isolation) -> dict:
    """LedgerConsumer._write on one batch, with `isolation` as its fallback; no Kafka client is made."""
    from metering.consumer.runner import LedgerConsumer, RunStats

    writer = object.__new__(LedgerConsumer)  # only what _write touches
    writer.stats = RunStats()
    writer._write_bisecting = isolation.__get__(writer)
    started = time.perf_counter()
    result, _, rejected = writer._write(checked)
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "transactions": 1 + writer.stats.isolation_writes,
            "appended": result.appended, "write_failed": sum(r.reason == "write_failed" for r in rejected)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--poison", type=int, default=1)
    parser.add_argument("--before", action="store_true", help="also time the former one-per-transaction pass")
    parser.add_argument("--database-url", default=DATABASE_URL_DEFAULT)
    args = parser.parse_args()
    figures = {"conditions": conditions(), "events": args.events, "poison": args.poison}
    database_create(args.database_url)
    django_start(database_url=args.database_url, bootstrap="127.0.0.1:9")  # no broker is used
    from django.db import connection

    from metering.consumer.runner import LedgerConsumer
    from metering.services import ledger_partitions_ahead, utc_now

    ledger_partitions_ahead(as_of=utc_now())
    with connection.cursor() as cursor:
        cursor.execute(FAULT_CREATE)
    try:
        clean = batch_checked(events=args.events, poison=0, seed=1)
        figures["clean_batch"] = timed_write(clean, isolation=LedgerConsumer._write_bisecting)
        figures["bisecting"] = timed_write(batch_checked(events=args.events, poison=args.poison, seed=2),
                                           isolation=LedgerConsumer._write_bisecting)
        if args.before:
            figures["one_per_transaction"] = timed_write(batch_checked(events=args.events, poison=args.poison, seed=3),
                                                         isolation=former_isolation)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(FAULT_DROP)
    figures_print(figures)


if __name__ == "__main__":
    main()
