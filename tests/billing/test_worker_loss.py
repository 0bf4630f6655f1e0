"""Worker loss on real Celery workers (Redis, prefork) against the test database: a
finalizing run whose prefork child, or whose whole worker, is SIGKILLed mid-run still
finishes, with one invoice per customer and gapless numbers (docs/operations.md, "Worker
loss"; billing.services.billing_runs)."""

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from django.db import connection

from billing.models import BillingRun, BillingRunChunk, Invoice
from billing.services.billing_runs import billing_run_create
from billing.tasks import billing_runs_watchdog_task
from config.celery import app
from metering.models import Customer, HourlyRollup

pytestmark = pytest.mark.django_db(transaction=True)
OCT = date(2026, 10, 1)
CUSTOMERS = 240
CHUNK_CUSTOMERS = 40  # six chunks of a few seconds each on two children
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def usage(list_prices):
    customers = [f"loss-{i:03d}" for i in range(CUSTOMERS)]
    Customer.objects.bulk_create(Customer(customer_id=c, name=c) for c in customers)
    HourlyRollup.objects.bulk_create(
        HourlyRollup(customer_id=c, model=model, service_tier="standard", region="", cluster="",
                     hour=datetime(2026, 10, day, hour, tzinfo=UTC), events=1, input_tokens=1_000_000 + rank,
                     cached_input_tokens=0, output_tokens=1_000)
        for rank, c in enumerate(customers) for day in (2, 9, 16, 23) for hour in (3, 15)
        for model in ("gpt-5.4", "gpt-5.4-mini", "gpt-5.4-nano"))
    return customers


class Workers:
    """Real `celery worker` processes on a queue of this test's own; killed at teardown."""

    def __init__(self, queue: str, env: dict):
        self.queue, self.env, self.processes = queue, env, []

    def start(self) -> subprocess.Popen:
        name = f"{self.queue}-{len(self.processes)}"
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", self.queue, "-c", "2",
             "--pool", "prefork", "-l", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-n", f"{name}@%h"],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.processes.append(process)
        deadline = time.monotonic() + 60
        while not app.control.ping(destination=[f"{name}@{os.uname().nodename}"], timeout=0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker did not start: {process.stderr.read().decode()[-2000:]}")
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


@pytest.fixture
def workers():
    queue = f"test-loss-{uuid.uuid4().hex[:8]}"
    previous, app.conf.task_default_queue = app.conf.task_default_queue, queue
    db = connection.settings_dict
    env = dict(os.environ, DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
               CELERY_TASK_DEFAULT_QUEUE=queue, BILLING_CHUNK_CUSTOMERS=str(CHUNK_CUSTOMERS),
               BILLING_CHUNK_DEADLINE_SECONDS="4", WEBHOOK_ALLOW_PRIVATE_URLS="1", LOG_LEVEL="WARNING")
    pool = Workers(queue, env)
    yield pool
    pool.stop_all()
    app.conf.task_default_queue = previous


def children_of(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return {int(child) for child in listing.read().split()}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(predicate, *, timeout_s: float, tick=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        if tick:
            tick()
        time.sleep(0.1)
    raise AssertionError("timed out")


def every(seconds: float, action):
    """A tick that calls `action` at most once per `seconds`, as beat would."""
    last = [0.0]

    def tick():
        if time.monotonic() - last[0] >= seconds:
            last[0] = time.monotonic()
            action()
    return tick


def chunk_under_way(run: BillingRun) -> BillingRunChunk | None:
    """A chunk begun and not done while another is done already: the run is mid-way."""
    chunks = BillingRunChunk.objects.filter(run=run)
    if not chunks.filter(done_at__isnull=False).exists():
        return None
    return chunks.filter(started_at__isnull=False, done_at__isnull=True).first()


def run_done(run: BillingRun) -> BillingRun | None:
    run.refresh_from_db()
    assert run.status != "failed", run.error
    return run if run.status == "done" else None


def assert_billed_once_and_gapless(customers: list[str]) -> None:
    invoices = Invoice.objects.filter(period=OCT).exclude(status="void")
    per_customer = sorted(invoices.values_list("customer__customer_id", flat=True))
    assert per_customer == sorted(customers)  # exactly one each
    assert set(invoices.values_list("status", flat=True)) == {"finalized"}
    assert sorted(int(n[-6:]) for n in invoices.values_list("number", flat=True)) == list(range(1, len(customers) + 1))


def test_a_prefork_child_killed_mid_chunk_costs_one_redelivery(usage, workers):
    main = workers.start()
    run = billing_run_create(period=OCT, finalize=True, actor="test", as_of=datetime.now(UTC))

    victim = wait_for(lambda: chunk_under_way(run), timeout_s=60)
    pid = int(victim.worker.rsplit(":", 1)[1])
    assert pid in children_of(main.pid)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    done = wait_for(lambda: run_done(run), timeout_s=60)  # no watchdog here: the broker redelivers
    recovered_s = time.monotonic() - killed_at

    print(f"\nprefork child killed: run done {recovered_s:.1f} s later")
    assert (done.customers_done, done.customers_total) == (CUSTOMERS, CUSTOMERS)
    victim.refresh_from_db()
    assert victim.attempts == 2 and victim.worker != f"{os.uname().nodename}:{pid}"
    assert main.poll() is None  # the worker itself lived on
    assert_billed_once_and_gapless(usage)
    assert recovered_s < 45


def test_a_worker_killed_mid_run_is_finished_by_a_new_worker_and_the_watchdog(usage, workers):
    first = workers.start()
    run = billing_run_create(period=OCT, finalize=True, actor="test", as_of=datetime.now(UTC))

    wait_for(lambda: chunk_under_way(run), timeout_s=60)
    children = children_of(first.pid)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    killed_at = time.monotonic()
    wait_for(lambda: not any(alive(child) for child in children), timeout_s=10)  # pdeathsig takes them too
    lost = list(BillingRunChunk.objects.filter(run=run, started_at__isnull=False, done_at__isnull=True))
    workers.start()
    # beat ticks every minute; here the test sends the watchdog task itself, every second
    done = wait_for(lambda: run_done(run), timeout_s=60, tick=every(1, billing_runs_watchdog_task.delay))
    recovered_s = time.monotonic() - killed_at

    print(f"\nworker main process killed: run done {recovered_s:.1f} s later")
    assert lost  # the kill did catch chunks under way, whose messages Redis holds unacknowledged for hours
    assert (done.customers_done, done.customers_total) == (CUSTOMERS, CUSTOMERS)
    for chunk in lost:
        chunk.refresh_from_db()
        assert chunk.attempts == 2 and chunk.done_at is not None
    assert_billed_once_and_gapless(usage)
    assert recovered_s < 50
