"""What both benchmarks share: a broker, the bench database with its catalog, fresh
topics, synthetic traffic, the app under gunicorn, peak RSS and the conditions printed with
the figures.

Django is imported inside functions: the environment (DATABASE_URL, Kafka) must be
in place before `django.setup()` reads settings.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from scripts import local_kafka
from scripts.traffic import Traffic

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DATABASE_URL_DEFAULT = "postgres://postgres@127.0.0.1:5432/tokenledger_bench"
SESSION_TIMEOUT_MS = 2_000  # a group join on Tansu takes about half of this
PARTITIONS = 6
CUSTOMERS = [f"bench-{rank:02d}" for rank in range(20)]
MODELS = {"gpt-5.4": "frontier", "gpt-5.4-mini": "mini", "gpt-5.4-nano": "nano"}  # name → model tier
LEDGER_TABLES = (
    "metering_usage_event", "metering_usage_event_key", "metering_usage_duplicate",
    "metering_dead_letter", "metering_hourly_rollup",
)


@contextmanager
def broker() -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS if set; else a Tansu broker on a free port, stopped on exit."""
    if bootstrap := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield bootstrap
        return
    port = local_kafka.free_port()
    process = local_kafka.broker_start(port=port)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: the broker and nothing else
        process.wait(timeout=10)


def database_create(url: str) -> None:
    """Create the database named in url if it does not exist yet."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            connection.execute(f'CREATE DATABASE "{name}"')


def django_start(*, database_url: str, bootstrap: str) -> None:
    """Point settings at the bench database and broker, then set up Django and migrate."""
    os.environ.update(DATABASE_URL=database_url, KAFKA_BOOTSTRAP_SERVERS=bootstrap)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    catalog_seed()


def catalog_seed() -> None:
    from metering.models import CatalogModel, Customer
    from metering.services import catalog_model_create

    Customer.objects.bulk_create(
        [Customer(customer_id=c, name=f"Bench customer {c}") for c in CUSTOMERS], ignore_conflicts=True
    )
    known = set(CatalogModel.objects.values_list("name", flat=True))
    for name, tier in MODELS.items():
        if name not in known:
            catalog_model_create(name=name, tier=tier)


def ledger_truncate() -> None:
    """Empty the ledger and its projections (bench database only: TRUNCATE bypasses the
    append-only row trigger)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(LEDGER_TABLES)}")


def topics_fresh(bootstrap: str, label: str) -> tuple[str, str]:
    """A new usage topic and its dead-letter topic, PARTITIONS partitions each."""
    topic = f"bench-{label}-{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}"
    dlq_topic = f"{topic}-dlq"
    local_kafka.topics_ensure(bootstrap, [topic, dlq_topic], partitions=PARTITIONS)
    return topic, dlq_topic


def traffic(*, seed: int, clean: bool) -> Traffic:
    """Events served over the last day. clean: no duplicates, conflicts or invalid events."""
    now = datetime.now(UTC)
    rates = {"duplicate_rate": 0.0, "conflict_rate": 0.0, "invalid_rate": 0.0} if clean else {}
    return Traffic(
        customers=CUSTOMERS, models=list(MODELS), start=now - timedelta(days=1),
        end=now - timedelta(minutes=10), seed=seed, **rates,
    )


def peak_rss_mb(pid: int | str = "self") -> float:
    """VmHWM, the peak resident set size of a live process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmHWM for process {pid}")


def target(measured: float, *, at_least: float | None = None, below: float | None = None) -> dict:
    """A measured figure against its goal: `at_least` (inclusive) or `below` (exclusive)."""
    if at_least is not None:
        return {"measured": measured, "at_least": at_least, "met": measured >= at_least}
    return {"measured": measured, "below": below, "met": measured < below}


def conditions() -> dict:
    """What the figures depend on besides the code, read before the broker starts."""
    from kafka.record import util  # kafka-python checksums every record batch with CRC-32C

    crc32c = "pure Python" if util._crc32c is util.crc32c_py else "C (crc32c package)"
    external = bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": commit.stdout.strip(), "cpus": os.cpu_count(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2), "kafka_python_crc32c": crc32c,
        "broker": "KAFKA_BOOTSTRAP_SERVERS" if external else "Tansu, in memory, loopback",
    }


def figures_print(figures: dict) -> None:
    print(json.dumps(figures, indent=2))


@contextmanager
def gunicorn(*, port: int, env: dict, server: str) -> Iterator[subprocess.Popen]:
    """The app under gunicorn on loopback, `server` being `sync:W` or `gthread:W:T` (W workers,
    T threads each); SIGTERM to its master on exit."""
    kind, workers, *threads = server.split(":")
    command = [str(Path(PYTHON).parent / "gunicorn"), "config.wsgi", "-w", workers, "-b", f"127.0.0.1:{port}",
               "--log-level", "warning"]
    if kind == "gthread":
        command += ["-k", "gthread", "--threads", threads[0]]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})
    try:
        deadline = time.monotonic() + 30
        while not local_kafka.port_open("127.0.0.1", port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.2)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
