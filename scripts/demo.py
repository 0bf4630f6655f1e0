"""The whole flow on one machine: a month of inference traffic through Kafka into the ledger.

    python -m scripts.demo [--events 200000]

Resets the demo database, starts a fresh local broker (unless KAFKA_BOOTSTRAP_SERVERS
is set), seeds the catalog and customers, produces last month's traffic with a few %
exact duplicates, some conflicting duplicates and some invalid events through the real
Kafka producer, runs the real ledger consumer until the topic is drained, and prints
what the ledger holds next to what was produced. Then it publishes prices (with a
mid-month change), signs two contracts and prints invoice previews; runs the billing
run for that month on a real Celery worker, finalizes, issues a credit note, writes the
PDFs to var/demo-invoices/ and prints the invoice table. Last, it seeds a mixed demo
fleet, allocates hardware and power cost to every hour of the month and prints the unit
economics by model tier and datacenter, with one cluster-hour worked by hand. Finally,
this month: more traffic through Kafka, budgets set mid-way and crossed, the alerts sent
once each, and the balances a gateway reads over the REST API.
"""

import argparse
import os
import sys
import threading
import time
import uuid
from datetime import UTC, datetime

DEMO_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tokenledger_demo"
CUSTOMERS = [("acme", "Acme Corp"), ("globex", "Globex"), ("initech", "Initech"), ("umbrella", "Umbrella Labs"),
             ("hooli", "Hooli"), ("stark", "Stark Industries"), ("wayne", "Wayne Enterprises"), ("tyrell", "Tyrell")]
MODELS = [("gpt-5.4", "frontier"), ("gpt-5.4-mini", "mini"), ("gpt-5.4-nano", "nano")]


def database_reset(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def previous_month(now: datetime) -> tuple[datetime, datetime]:
    end = datetime(now.year, now.month, 1, tzinfo=UTC)
    start = datetime(end.year - (end.month == 1), (end.month - 2) % 12 + 1, 1, tzinfo=UTC)
    return start, end


# Every token class a provider bills, on top of the fleet's shapes (scripts.demo_costs):
# frontier requests are agents that write their growing context to the prompt cache (most
# for 5 minutes, some for an hour), reason before answering, and 2% are voice agents; mini
# serves voice assistants (6% of its requests are speech in and out) and reasons a little;
# nano is bulk extraction, text only.
TOKEN_CLASS_SHAPES = {
    "gpt-5.4": {"cache_write_shares": (0, 0.2, 0.4, 0.6), "cache_write_long_shares": (0, 0, 0, 0.25),
                "audio_rate": 0.02, "audio_input_shares": (0.8, 1), "audio_output_shares": (0.9,),
                "reasoning_shares": (0, 0.3, 0.5, 0.7)},
    "gpt-5.4-mini": {"cache_write_shares": (0, 0, 0.2), "audio_rate": 0.06, "audio_input_shares": (0.7, 1),
                     "audio_output_shares": (0.8, 1), "reasoning_shares": (0, 0, 0.2, 0.4)},
}


def demo_traffic(start: datetime, end: datetime, *, seed: int = 7):
    """The demo month's requests, shaped and routed for the demo fleet (scripts.demo_costs),
    with the token classes of TOKEN_CLASS_SHAPES and a flex share (scripts.traffic)."""
    from dataclasses import replace

    from scripts.demo_costs import MODEL_WEIGHTS, SHAPES
    from scripts.traffic import Traffic

    shapes = {model: replace(shape, **TOKEN_CLASS_SHAPES.get(model, {})) for model, shape in SHAPES.items()}
    return Traffic(customers=[c for c, _ in CUSTOMERS], models=[m for m, _ in MODELS], start=start, end=end,
                   model_weights=MODEL_WEIGHTS, shapes=shapes, seed=seed)


def broker_fresh() -> tuple[str, object]:
    """A clean local broker for this run, or the configured one."""
    from scripts import local_kafka

    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        return configured, None
    port = local_kafka.free_port()
    os.makedirs("var", exist_ok=True)
    return f"127.0.0.1:{port}", local_kafka.broker_start(port=port, log_path=local_kafka.STATE_DIR / "demo-tansu.log")


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="elements to produce (default 200,000)")
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = os.environ.get("DEMO_DATABASE_URL", DEMO_DATABASE_URL)
    step(f"database {os.environ['DATABASE_URL']} (reset)")
    database_reset(os.environ["DATABASE_URL"])
    bootstrap, broker = broker_fresh()
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    suffix = "" if broker is not None else f"-demo-{uuid.uuid4().hex[:8]}"
    os.environ["KAFKA_USAGE_TOPIC"] = f"usage-events{suffix}"
    os.environ["KAFKA_USAGE_DLQ_TOPIC"] = f"usage-events-dlq{suffix}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    try:
        run(args.events, bootstrap)
    finally:
        if broker is not None:
            broker.terminate()


def run(events: int, bootstrap: str) -> None:
    from django.conf import settings
    from django.core.management import call_command
    from kafka import KafkaProducer
    from tqdm import tqdm

    from metering.models import Customer
    from metering.services import catalog_model_create
    from scripts import local_kafka
    from scripts.demo_billing import invoices_issue
    from scripts.demo_corrections import correction_show
    from scripts.demo_costs import fleet_seed, unit_economics_print
    from scripts.demo_pricing import invoices_print
    from scripts.demo_spend import spend_show
    from scripts.traffic import messages_produce

    call_command("migrate", verbosity=0)
    step(f"Kafka at {bootstrap}: topics {settings.KAFKA_USAGE_TOPIC}, {settings.KAFKA_USAGE_DLQ_TOPIC} (6 partitions)")
    local_kafka.topics_ensure(bootstrap, [settings.KAFKA_USAGE_TOPIC, settings.KAFKA_USAGE_DLQ_TOPIC], partitions=6)
    for customer_id, name in CUSTOMERS:
        Customer.objects.create(customer_id=customer_id, name=name)
    for name, tier in MODELS:
        catalog_model_create(name=name, tier=tier)
    print(f"catalog: {', '.join(f'{m} ({t})' for m, t in MODELS)}; {len(CUSTOMERS)} customers")

    start, end = previous_month(datetime.now(UTC))
    traffic = demo_traffic(start, end)
    step(f"producing {events:,} usage events served {start:%Y-%m-%d} – {end:%Y-%m-%d} (acks=all, keyed by customer)")
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024)
    half = events // 2
    with tqdm(total=events, unit="ev", desc="produce", file=sys.stdout, mininterval=0.5) as bar:
        messages_produce(producer, settings.KAFKA_USAGE_TOPIC, traffic.messages(half, undecodable=25),
                         progress=bar.update)
        batched = traffic.messages(events - half, batch_size=200)
        messages_produce(producer, settings.KAFKA_USAGE_TOPIC, batched, progress=lambda _: None)
        bar.update(events - half)
    producer.close()
    print("first half as one event per message (gateways), second half as arrays of up to 200 (batching gateways)")

    step("consuming into the ledger (consumer group metering-ledger) until drained")
    elapsed = consume_with_progress(bootstrap, expected=events + 25)
    summary_print(traffic.tally, elapsed)
    step("the fleet (owned and leased clusters; one rented to a customer) and pricing: price books, contracts, "
         "credits, a reservation, a rental, invoice previews")
    fleet_seed(start=start, end=end)
    invoices_print(customers=[c for c, _ in CUSTOMERS], start=start, end=end, as_of=datetime.now(UTC))
    step(f"invoicing {start:%Y-%m}: billing run on Celery, finalized, a credit note, PDFs")
    invoices_issue(period_start=start, as_of=datetime.now(UTC))
    step("a correction after finalization: an adjustment through Kafka, the re-rating preview, a debit note")
    correction_show(period_start=start, consume=lambda n: consume_with_progress(bootstrap, expected=n),
                    as_of=datetime.now(UTC))
    step(f"cost allocation and unit economics {start:%Y-%m} (demo fleet; figures labelled as demo)")
    unit_economics_print(start=start, end=end)
    step("spend control this month: live balances off Kafka, budgets, alerts, a gateway's balance reads")
    spend_show(bootstrap=bootstrap, customers=[c for c, _ in CUSTOMERS],
               consume=lambda n: consume_with_progress(bootstrap, expected=n))


def consume_with_progress(bootstrap: str, *, expected: int) -> float:
    from django.conf import settings
    from django.db import connection
    from tqdm import tqdm

    from metering.consumer.runner import ConsumerConfig, LedgerConsumer

    config = ConsumerConfig(bootstrap_servers=bootstrap, topic=settings.KAFKA_USAGE_TOPIC,
                            group_id=settings.KAFKA_CONSUMER_GROUP, dlq_topic=settings.KAFKA_USAGE_DLQ_TOPIC,
                            session_timeout_ms=3_000, idle_exit_s=3.0, stats_interval_s=3600)
    consumer = LedgerConsumer(config)

    def work():
        try:
            consumer.run(threading.Event())
        finally:
            connection.close()

    began = time.monotonic()
    thread = threading.Thread(target=work, name="ledger-consumer")
    thread.start()
    with tqdm(total=expected, unit="ev", desc="consume", file=sys.stdout, mininterval=0.5) as bar:
        while thread.is_alive():
            bar.update(consumer.stats.events - bar.n)
            thread.join(timeout=0.2)
        bar.update(consumer.stats.events - bar.n)
    return time.monotonic() - began


def summary_print(tally, elapsed_s: float) -> None:
    from collections import Counter

    from django.db.models import Count, Sum

    from metering.models import DeadLetter, HourlyRollup, UsageDuplicate, UsageEvent
    from metering.projections import rollup_differences
    from metering.token_classes import CLASSES as TOKEN_CLASSES
    from metering.token_classes import FIELDS as TOKEN_FIELDS
    from metering.token_classes import priced

    accepted = UsageEvent.objects.count()
    duplicates = UsageDuplicate.objects.count()
    conflicts = DeadLetter.objects.filter(kind="conflict").count()
    letters = DeadLetter.objects.exclude(kind="conflict")
    step("summary")
    rows = [("events accepted into the ledger", accepted, tally.accepted),
            ("exact duplicates (dropped, counted)", duplicates, tally.duplicates),
            ("conflicting duplicates (kept aside)", conflicts, tally.conflicts),
            ("dead letters (invalid + undecodable)", letters.count(), tally.invalid + tally.undecodable)]
    print(f"{'':40} {'ledger':>10} {'produced':>10}")
    for label, got, want in rows:
        print(f"{label:40} {got:>10,} {want:>10,}  {'ok' if got == want else 'MISMATCH'}")
    print(f"consumer: {elapsed_s:.1f} s wall clock (including the group join), "
          f"{(accepted + duplicates + conflicts + letters.count()) / elapsed_s:,.0f} elements/s")
    print("dead letters by reason: " + ", ".join(
        f"{r['reason']} {r['n']}" for r in letters.values("reason").annotate(n=Count("id")).order_by("-n")))

    tiers = dict(MODELS)
    by_model = HourlyRollup.objects.values("model", "service_tier").annotate(
        events=Sum("events"), **{name: Sum(name) for name in TOKEN_FIELDS})
    step("tokens by model and service tier, in the priced classes (from the hourly rollups)")
    columns = (("input", 13), ("cached", 13), ("cache 5m", 11), ("cache 1h", 11), ("audio in", 11),
               ("output", 12), ("audio out", 11))
    print(f"{'model':13} {'tier':8} {'service':8} {'events':>8} "
          + " ".join(f"{label:>{width}}" for label, width in columns) + f" {'reasoning':>11}")
    per_class, reasoning = Counter(), Counter()
    for row in sorted(by_model, key=lambda r: (r["model"], r["service_tier"])):
        classes = priced(row)
        per_class.update({(row["model"], c): n for c, n in classes.items() if n})
        reasoning[row["model"]] += row["reasoning_tokens"]
        print(f"{row['model']:13} {tiers[row['model']]:8} {row['service_tier']:8} {row['events']:>8,} "
              + " ".join(f"{classes[c]:>{width},}" for c, (_, width) in zip(TOKEN_CLASSES, columns))
              + f" {row['reasoning_tokens']:>11,}")
    print("(input = input_tokens less its cached, cache-written and audio parts; output = output_tokens less audio; "
          "reasoning is a part of output, priced as output)")
    matches = per_class == tally.tokens and reasoning == tally.reasoning
    print(f"token sums per model and class equal the producer's tally: {'ok' if matches else 'MISMATCH'}")
    differences = rollup_differences(start=None, end=None)
    print(f"verify_projections: {'hourly rollups agree with the ledger' if not differences else differences[:3]}")
    if differences or not matches or any(got != want for _, got, want in rows):
        sys.exit("the ledger does not match what was produced")


if __name__ == "__main__":
    main()
