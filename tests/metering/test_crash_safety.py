"""Consumer processes killed, stopped and run side by side: the ledger still holds
exactly the distinct events produced. Real processes, broker and Postgres."""

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Sum

from metering.models import Customer, DeadLetter, UsageDuplicate, UsageEvent
from scripts.traffic import Traffic, messages_produce
from tests.conftest import TEST_SESSION_TIMEOUT_MS, utc
from tests.metering.factories import event
from tests.metering.kafka_helpers import offsets_uncommitted, send
from tests.metering.tcp_proxy import TcpProxy

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
CUSTOMERS = ["acme", "globex", "initech", "umbrella", "hooli", "stark"]


def start_consumer(topics, kafka_bootstrap, *, batch_messages_max: int = 200, database_port: int | None = None,
                   extra: tuple[str, ...] = ()) -> subprocess.Popen:
    db = connection.settings_dict
    port = database_port or db["PORT"]
    env = dict(os.environ, DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{port}/{db['NAME']}",
               KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, LOG_LEVEL="WARNING")
    return subprocess.Popen(
        [sys.executable, "manage.py", "consume_usage", "--topic", topics["usage"], "--dlq-topic", topics["dlq"],
         "--group", topics["group"], "--session-timeout-ms", str(TEST_SESSION_TIMEOUT_MS),
         "--batch-messages-max", str(batch_messages_max), "--until-idle", "3", *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.fixture
def customers(catalog):
    for customer_id in CUSTOMERS[2:]:
        Customer.objects.create(customer_id=customer_id, name=customer_id.title())


def produce_traffic(producer, topic: str, *, seed: int, singles: int, batched: int) -> Traffic:
    traffic = Traffic(customers=CUSTOMERS, models=["gpt-5.4", "gpt-5.4-mini", "gpt-5.4-nano"], seed=seed,
                      start=utc(2026, 10, 25), end=utc(2026, 11, 20), duplicate_rate=0.04, conflict_rate=0.01,
                      invalid_rate=0.01)
    messages_produce(producer, topic, traffic.messages(singles, batch_size=1, undecodable=3))
    messages_produce(producer, topic, traffic.messages(batched, batch_size=100))
    return traffic


def ledger_count() -> int:
    return UsageEvent.objects.filter(customer_id__in=CUSTOMERS).count()


def assert_ledger_matches(traffic: Traffic) -> None:
    tally = traffic.tally
    assert ledger_count() == tally.accepted
    tokens = Counter()
    for row in UsageEvent.objects.values("model").annotate(i=Sum("input_tokens"), c=Sum("cached_input_tokens"),
                                                            o=Sum("output_tokens")):
        tokens[(row["model"], "input")] += row["i"] - row["c"]
        tokens[(row["model"], "cached_input")] += row["c"]
        tokens[(row["model"], "output")] += row["o"]
    assert tokens == tally.tokens
    assert UsageDuplicate.objects.count() == tally.duplicates
    assert DeadLetter.objects.filter(kind="conflict").count() == tally.conflicts
    assert DeadLetter.objects.exclude(kind="conflict").count() == tally.invalid + tally.undecodable
    out = StringIO()
    call_command("verify_projections", stdout=out)
    assert "agree" in out.getvalue()


def wait_for_progress(process, above: int, timeout_s: float = 30) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        count = ledger_count()
        if count > above:
            return count
        time.sleep(0.05)
    raise AssertionError(f"the consumer made no progress past {above} events")


def test_sigkill_at_random_points_loses_nothing_and_counts_nothing_twice(customers, topics, producer,
                                                                         kafka_bootstrap):
    traffic = produce_traffic(producer, topics["usage"], seed=21, singles=12_000, batched=18_000)
    rng, seen, kills = random.Random(5), 0, 0

    for _ in range(4):
        consumer = start_consumer(topics, kafka_bootstrap)
        seen = wait_for_progress(consumer, seen)
        time.sleep(rng.uniform(0, 0.4))
        consumer.send_signal(signal.SIGKILL)
        consumer.wait(timeout=10)
        kills += consumer.returncode == -signal.SIGKILL
    partial = ledger_count()
    final = start_consumer(topics, kafka_bootstrap)
    final.wait(timeout=300)

    assert kills == 4 and partial < traffic.tally.accepted, "every kill must land mid-drain"
    assert final.returncode == 0, final.stderr.read()
    assert_ledger_matches(traffic)


def test_sigterm_finishes_the_batch_commits_and_exits_zero(customers, topics, producer, kafka_bootstrap):
    traffic = produce_traffic(producer, topics["usage"], seed=22, singles=6_000, batched=6_000)

    consumer = start_consumer(topics, kafka_bootstrap)
    wait_for_progress(consumer, 0)
    consumer.send_signal(signal.SIGTERM)
    stdout, _ = consumer.communicate(timeout=30)
    stopped_at = ledger_count()
    restarted = start_consumer(topics, kafka_bootstrap)
    restarted.wait(timeout=300)

    assert consumer.returncode == 0 and stdout.startswith("consumed")
    assert stopped_at < traffic.tally.accepted
    assert_ledger_matches(traffic)


def test_consumers_in_one_group_share_the_partitions(customers, topics, producer, kafka_bootstrap):
    traffic = produce_traffic(producer, topics["usage"], seed=23, singles=15_000, batched=25_000)

    consumers = [start_consumer(topics, kafka_bootstrap, batch_messages_max=100) for _ in range(2)]
    outputs = [c.communicate(timeout=300)[0] for c in consumers]

    assert [c.returncode for c in consumers] == [0, 0]
    consumed = [int(out.split()[1]) for out in outputs]
    assert all(n > 0 for n in consumed), outputs
    assert_ledger_matches(traffic)


DATABASE_WENT_AWAY = re.compile(
    r"consume_usage: the database went away \(.+\); exiting 1 so the supervisor restarts it; "
    r"the batch in hand will be replayed")


def test_the_database_going_away_mid_drain_exits_1_in_one_line_and_a_restart_ends_exact(
    customers, topics, producer, kafka_bootstrap
):
    traffic = produce_traffic(producer, topics["usage"], seed=24, singles=6_000, batched=6_000)
    db = connection.settings_dict
    proxy = TcpProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))  # this consumer's Postgres only

    try:
        consumer = start_consumer(topics, kafka_bootstrap, database_port=proxy.port)
        wait_for_progress(consumer, 0)
        proxy.cut()
        cut_at = ledger_count()
        _, stderr = consumer.communicate(timeout=60)
        refused = start_consumer(topics, kafka_bootstrap, database_port=proxy.port)  # restarted too early
        _, refused_stderr = refused.communicate(timeout=60)
        proxy.resume()
        restarted = start_consumer(topics, kafka_bootstrap, database_port=proxy.port)
        restarted_stdout, restarted_stderr = restarted.communicate(timeout=300)
    finally:
        proxy.close()

    assert cut_at < traffic.tally.accepted, "the cut must land mid-drain"
    for process, output in ((consumer, stderr), (refused, refused_stderr)):
        assert process.returncode == 1, output
        assert "Traceback" not in output, output
        assert DATABASE_WENT_AWAY.fullmatch(output.strip().splitlines()[-1]), output
    assert restarted.returncode == 0, restarted_stderr
    assert restarted_stdout.startswith("consumed")
    assert_ledger_matches(traffic)


def test_isolating_poison_elements_fits_in_the_poll_interval_so_the_offset_advances(
    catalog, topics, producer, kafka_bootstrap, postgres_refuses
):
    elements = [event(cached_input_tokens=0) for _ in range(3_000)]
    for index in (100, 2_222):
        elements[index]["event_id"] = f"{postgres_refuses}{index}"
    for start in range(0, len(elements), 100):
        send(producer, topics["usage"], elements[start:start + 100])
    producer.flush()

    # One transaction per element takes far longer than 5 s for 3,000: the group would
    # drop the consumer, refuse the commit and replay the batch, forever.
    consumer = start_consumer(topics, kafka_bootstrap, batch_messages_max=20_000,
                              extra=("--max-poll-interval-ms", "5000"))
    stdout, stderr = consumer.communicate(timeout=120)

    assert consumer.returncode == 0, stderr
    assert "commit refused" not in stderr and "poll timeout" not in stderr, stderr
    assert offsets_uncommitted(kafka_bootstrap, topics["usage"], group=topics["group"]) == {}
    assert UsageEvent.objects.filter(customer_id="acme").count() == len(elements) - 2
    assert sorted(DeadLetter.objects.values_list("reason", flat=True)) == ["write_failed"] * 2
