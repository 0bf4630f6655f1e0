"""A billing run for 10,000 customers over one month, drafts then finalize, on real Celery
workers (target: < 60 s from the first run's creation to the second run's done).

    python -m bench.billing [--customers 10000] [--workers 2] [--concurrency 1] [--seed 3]
    python -m bench.billing --py-spy /tmp/billing      # py-spy on every worker → /tmp/billing-*.raw

Builds, in a database of its own (`tokenledger_bench_billing`, or BENCH_BILLING_DATABASE_URL),
the data of `bench/rating.py` (its own builders, imported): 10,000 customers, a month
(October 2026) of sparse hourly rollups, the demo price books with a mid-month change,
contracts and prepaid credit for 10% of the customers. No webhook endpoint (no
deliveries), an empty invoice table.

Then it starts `--workers` Celery worker processes (`celery -A config worker -c
<concurrency> --pool prefork`) on a queue of their own, against this database, and
times two runs made with `billing_run_create`: drafts (`finalize=False`), then
finalize (`finalize=True`), each from its creation until its BillingRun row says
`done` (polled every 50 ms). Workers are stopped at the end (SIGTERM to their process
groups, SIGKILL after 30 s). Prints JSON.
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._setup import PYTHON, ROOT, database_create, figures_print, target  # noqa: E402

DATABASE_URL_DEFAULT = "postgres://postgres@127.0.0.1:5432/tokenledger_bench_billing"
TARGET_S = 60
PERIOD = date(2026, 10, 1)
START, END = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
INVOICING_TABLES = (
    "billing_billingrunchunk", "billing_billingrun", "billing_billedusage", "billing_invoiceline",
    "billing_creditnote", "billing_invoice", "billing_documentcounter", "billing_auditentry",
    "billing_webhookdelivery", "billing_webhookendpoint",
)


def data_seed(*, customers: int, seed: int, rollups: bool) -> dict:
    """Empty the invoicing tables (TRUNCATE ... CASCADE reaches the credit ledger too); then
    rating's builders: catalog, prices, contracts, credit, and unless `rollups` is false
    (--reuse-data) the rollups. The same seed gives the same data either way: the rollups
    are drawn after the contracts from one generator."""
    from django.db import connection

    from bench.rating import seed_catalog_prices_contracts, seed_rollups

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(INVOICING_TABLES)} CASCADE")
    rng = random.Random(seed)
    began = time.perf_counter()
    seed_catalog_prices_contracts(customers=customers, start=START, rng=rng)
    if rollups:
        rows = seed_rollups(customers=customers, start=START, rng=rng)
    with connection.cursor() as cursor:
        if not rollups:
            cursor.execute("SELECT count(*) FROM metering_hourly_rollup")
            rows = cursor.fetchone()[0]
        cursor.execute("ANALYZE")
    return {"hourly_rollup_rows": rows, "rollups_reused": not rollups, "seed_s": round(time.perf_counter() - began, 2)}


class Workers:
    """`count` Celery worker processes on `queue`, each in a process group of its own."""

    def __init__(self, *, count: int, concurrency: int, queue: str, database_url: str, env_extra: dict):
        self.queue, self.processes, self.names = queue, [], []
        env = dict(os.environ, DATABASE_URL=database_url, CELERY_TASK_DEFAULT_QUEUE=queue, LOG_LEVEL="WARNING",
                   **env_extra)
        self.logs = []
        for n in range(count):
            name = f"{queue}-{n}@{os.uname().nodename}"
            log = open(f"/tmp/{queue}-{n}.log", "w+b")  # noqa: SIM115 (closed in stop)
            self.processes.append(subprocess.Popen(
                [PYTHON, "-m", "celery", "-A", "config", "worker", "-Q", queue, "-c", str(concurrency), "--pool",
                 "prefork", "-l", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "-n", name],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            self.names.append(name)
            self.logs.append(log)

    def wait_ready(self, app, timeout_s: float = 90) -> float:
        began = time.monotonic()
        waiting = set(self.names)
        while waiting:
            for reply in app.control.ping(destination=list(waiting), timeout=0.5) or []:
                waiting -= set(reply)
            if any(p.poll() is not None for p in self.processes) or time.monotonic() - began > timeout_s:
                raise RuntimeError(f"Celery workers did not start: {self.log_tail()}")
        return time.monotonic() - began

    def pids(self) -> list[int]:
        """The worker main processes and their prefork children."""
        pids = []
        for process in self.processes:
            pids.append(process.pid)
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
            if children.exists():
                pids.extend(int(p) for p in children.read_text().split())
        return pids

    def peak_rss_mb(self) -> dict[int, float]:
        out = {}
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        out[pid] = round(int(line.split()[1]) / 1024, 1)
            except FileNotFoundError:
                pass
        return out

    def log_tail(self) -> str:
        tails = []
        for log in self.logs:
            log.flush()
            log.seek(0)
            tails.append(log.read().decode(errors="replace")[-2000:])
        return "\n".join(tails)

    def stop(self, timeout_s: float = 30) -> dict:
        """Warm shutdown (SIGTERM to each group), then SIGKILL whatever is left."""
        killed = 0
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
                killed += 1
        for process in self.processes:  # prefork children left behind, if any, are in the group
            try:
                os.killpg(process.pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        for log in self.logs:
            log.close()
        return {"exit_codes": [p.returncode for p in self.processes], "killed": killed}


class Profilers:
    """py-spy record on each worker main process and its prefork children (raw stacks)."""

    def __init__(self, prefix: str | None, pids: list[int]):
        self.processes = []
        if not prefix:
            return
        spy = str(Path(PYTHON).with_name("py-spy"))
        for pid in pids:
            self.processes.append(subprocess.Popen(
                [spy, "record", "--subprocesses", "--idle", "--format", "raw", "-r", "50", "-p", str(pid),
                 "-o", f"{prefix}-{pid}.raw"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def run_timed(*, finalize: bool, timeout_s: float) -> dict:
    """billing_run_create, then poll until the run is done (or failed). `until_running_s`:
    until the start task has listed the customers and queued the chunks (as the poll saw
    it); `chunks_s`: the rest."""
    from billing.models import BillingRun, Invoice
    from billing.services.billing_runs import billing_run_create
    from metering.services import utc_now

    began = time.perf_counter()
    run = billing_run_create(period=PERIOD, finalize=finalize, actor="bench", as_of=utc_now())
    seen_running = None
    while True:
        row = BillingRun.objects.values("status", "customers_total", "customers_done", "created_at", "started_at",
                                        "finished_at", "error").get(pk=run.pk)
        if row["status"] == BillingRun.Status.RUNNING and seen_running is None:
            seen_running = time.perf_counter() - began
        if row["status"] in (BillingRun.Status.DONE, BillingRun.Status.FAILED):
            break
        if time.perf_counter() - began > timeout_s:
            raise RuntimeError(f"run {run.pk} not done after {timeout_s} s: {row}")
        time.sleep(0.05)
    seconds = time.perf_counter() - began
    invoices = Invoice.objects.filter(period=PERIOD)
    return {
        "run_id": run.pk, "status": row["status"], "error": row["error"][:500], "seconds": round(seconds, 2),
        "customers": row["customers_total"], "customers_done": row["customers_done"],
        "chunks": run.chunks.count(),
        "until_running_s": round(seen_running, 2) if seen_running is not None else None,
        "chunks_s": round(seconds - seen_running, 2) if seen_running is not None else None,
        "invoices_draft": invoices.filter(status=Invoice.Status.DRAFT).count(),
        "invoices_finalized": invoices.filter(status=Invoice.Status.FINALIZED).count(),
        "customers_per_s": round(row["customers_total"] / seconds, 1),
    }


def checks() -> dict:
    """Gapless numbers, one finalized invoice per customer with usage or a contract line,
    totals as rated."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT count(*), count(DISTINCT number), coalesce(sum(total), 0),
                   (SELECT coalesce(max(last), 0) FROM billing_documentcounter WHERE prefix = 'INV'),
                   (SELECT count(*) FROM billing_invoiceline l JOIN billing_invoice i ON i.id = l.invoice_id
                    WHERE i.period = %(period)s),
                   (SELECT count(*) FROM billing_billedusage),
                   (SELECT count(*) FROM billing_auditentry WHERE action = 'invoice.finalize')
            FROM billing_invoice WHERE period = %(period)s AND status = 'finalized'""", {"period": PERIOD})
        finalized, numbers, total, last, lines, billed, audited = cursor.fetchone()
    return {"invoices_finalized": finalized, "numbers_distinct": numbers, "counter_last": last,
            "gapless": finalized == numbers == last, "invoiced_total_usd": f"{Decimal(total):.2f}",
            "invoice_lines": lines, "billed_usage_rows": billed, "audit_entries_finalize": audited}


def conditions(database_url: str) -> dict:
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": commit.stdout.strip(), "cpus": os.cpu_count(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()], "database": database_url.rsplit("/", 1)[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=1, help="prefork children per worker")
    parser.add_argument("--chunk-customers", type=int, help="BILLING_CHUNK_CUSTOMERS for the workers")
    parser.add_argument("--phase-timeout-s", type=float, default=1800)
    parser.add_argument("--reuse-data", action="store_true",
                        help="keep the rollups of the last run (same --customers and --seed); rebuild the rest")
    parser.add_argument("--py-spy", dest="py_spy", help="record each worker with py-spy to <PREFIX>-<pid>.raw")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_BILLING_DATABASE_URL", DATABASE_URL_DEFAULT))
    args = parser.parse_args()
    figures = {"benchmark": "billing", "conditions": conditions(args.database_url)}
    queue = f"bench-billing-{uuid.uuid4().hex[:8]}"
    database_create(args.database_url)
    os.environ.update(DATABASE_URL=args.database_url, DJANGO_SETTINGS_MODULE="config.settings",
                      CELERY_TASK_DEFAULT_QUEUE=queue, LOG_LEVEL="WARNING")
    env_extra = {"BILLING_CHUNK_CUSTOMERS": str(args.chunk_customers)} if args.chunk_customers else {}
    os.environ.update(env_extra)
    import django
    from django.conf import settings
    from django.core.management import call_command
    django.setup()
    call_command("migrate", verbosity=0)
    from config.celery import app

    app.conf.task_default_queue = queue
    figures["data"] = data_seed(customers=args.customers, seed=args.seed, rollups=not args.reuse_data)
    figures["data"].update(customers=args.customers, period=f"{PERIOD:%Y-%m}",
                           chunk_customers=settings.BILLING_CHUNK_CUSTOMERS)
    figures["workers"] = {"processes": args.workers, "concurrency": args.concurrency, "pool": "prefork",
                          "queue": queue}
    workers = Workers(count=args.workers, concurrency=args.concurrency, queue=queue, database_url=args.database_url,
                      env_extra=env_extra)
    profilers = None
    try:
        figures["workers"]["ready_s"] = round(workers.wait_ready(app), 2)
        profilers = Profilers(args.py_spy, [p.pid for p in workers.processes])
        figures["conditions"]["load_avg_before_runs"] = [round(x, 2) for x in os.getloadavg()]
        drafts = run_timed(finalize=False, timeout_s=args.phase_timeout_s)
        finalize = run_timed(finalize=True, timeout_s=args.phase_timeout_s)
        figures["conditions"]["load_avg_after_runs"] = [round(x, 2) for x in os.getloadavg()]
        figures["workers"]["peak_rss_mb"] = list(workers.peak_rss_mb().values())
    finally:
        if profilers:
            profilers.stop()
        figures["workers"]["stop"] = workers.stop()
        with app.connection_for_write() as conn:  # nothing may be left of the queue in Redis
            channel = conn.default_channel
            figures["workers"]["stop"]["purged"] = channel.queue_purge(queue) or 0
            channel.client.delete(f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    seconds = drafts["seconds"] + finalize["seconds"]
    figures["phases"] = {"drafts": drafts, "finalize": finalize}
    figures["seconds"] = round(seconds, 2)
    figures["invoices"] = finalize["invoices_finalized"]
    figures["customers_per_s"] = round(drafts["customers"] / seconds, 1)
    figures["checks"] = checks()
    figures["ok"] = (drafts["status"] == finalize["status"] == "done" and figures["checks"]["gapless"]
                     and finalize["invoices_finalized"] == drafts["invoices_draft"])
    figures["target"] = target(round(seconds, 2), below=TARGET_S)
    figures_print(figures)


if __name__ == "__main__":
    main()
