"""Balance reads under gunicorn, and the lag from produce to balance (issue #13).

    .venv/bin/python -m bench.balance                        # sync -w 2 and gthread 2 × 4; lag at 20,000/s
    .venv/bin/python -m bench.balance --events-per-s 20000,5000       # and a second lag run at 5,000/s
    .venv/bin/python -m bench.balance --servers sync:2 --read-duration-s 10 --lag-duration-s 20  # quicker

Setup, in a database of its own (tokenledger_bench_balance; its tables emptied): the
builders of bench/rating.py for --customers customers (catalog, list prices and a
frontier output price cut inside the window, contracts with discounts and volume bands
plus prepaid credit for 10%), credit for another 10%, hourly rollups over the 30 days up
to the current hour (the tail of the previous month and the current month so far: a
balance is of the period holding now), a mini output price cut at 00:00 UTC today (when
that is inside the month, so the current month's segments are cut too), and the usage
segments filled from the rollups (`SEGMENT_OF_ROLLUPS`, month by month). Every Spend
row is computed once; 60% of the customers get a budget with `budget_put` (limit 0.6–3×
their spend, a third hard, thresholds 50/80/100); every Spend row is dropped and
computed again, timed (the cold pass: `spends_refresh` in chunks of --chunk), then a
sample is dropped and recomputed one customer at a time (a balance read that finds no
row pays this).

In process, no HTTP, wall and CPU ms per call: `balance_read` alone, the DRF views' key
lookup and throttle, each read phase's GET through `config.wsgi.application` (what
gunicorn calls: the balance hot path, billing/balance_hot_path.py, in front of Django),
and GET balance through the DRF view it falls back to; so the HTTP figures split into
the app's share and gunicorn + TCP + the client's.

Reads, for each --servers entry (`sync:W` or `gthread:W:T`): `gunicorn config.wsgi` on a
free port, and a load process of its own with --connections threads, each sending GETs
back to back for --read-duration-s on its own connection (reopened whenever the server
closes it: a sync worker closes every one, gthread keeps them open). Three phases, each
with a new admin key (a fresh throttle window) after --warmup untimed GETs: GET
/customers/{id}/balance for random customers; the baseline, GET /customers/{id}/budget
for random budgeted customers (the same key auth and throttle through DRF, two indexed
reads: the customer, its budget); and GET /healthz (no auth, no database: the floor of
gunicorn, the first middlewares, TCP and the client). Figures: reads/s, p50/p99/max latency (send
to response read), non-200 responses, reads/s per 5 s, CPU of the gunicorn workers and
of the load process, the machine's busy share.

Lag, on the first server, once per --events-per-s: a fresh topic, a real LedgerConsumer
in a process of its own (`python -m bench.balance consume`: bench._consume's consumer,
with each batch and its spends_refresh timed by wrappers set here), warmed up by one
probe event; then a producer process sends the rate as JSON arrays of
--events-per-message events of one customer (keyed by it; customers drawn with
rating's long-tail weights), paced every 10 ms, for --lag-duration-s, while the load
process reads balances. Meanwhile the probe: every 250 ms one event for the customer
`probe` (400,000 gpt-5.4 standard input tokens: exactly 1.00 USD at list prices), its
send instant recorded; a thread polls the probe's balance every 20 ms, and an event is
visible at the read of the first response whose spend counts it. Figures: produce →
balance p50/p99/max, the lag_ms the API reported to the reads and to the probe, whether
any response's as_of claimed a probe it did not count, the consumer's rate while
producing and its drain time after (did it keep up), its batches and refresh times.

Prints JSON. Targets (issue #13): ≥ 1,000 balance reads/s with p99 < 20 ms; the p99 of
produce → balance is reported (the issue sets no figure for it).
"""

import argparse
import bisect
import http.client
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from multiprocessing import get_context
from pathlib import Path
from wsgiref.util import setup_testing_defaults

from bench._setup import (
    LEDGER_TABLES, PYTHON, ROOT, broker, conditions, database_create, django_start, figures_print, target,
    gunicorn, topics_fresh,
)
from scripts import local_kafka

DATABASE_URL_DEFAULT = "postgres://postgres@127.0.0.1:5432/tokenledger_bench_balance"
PROBE = "probe"
PROBE_INPUT_TOKENS = 400_000  # gpt-5.4 (frontier) standard input, 2.50 per 1M: 1.00 USD
PROBE_AMOUNT = Decimal("1.00")
PROBE_EVERY_S, PROBE_POLL_S, PACE_S, WINDOW_S = 0.250, 0.020, 0.010, 5.0
EVENT_MODELS = (("gpt-5.4", 0.45), ("gpt-5.4-mini", 0.35), ("gpt-5.4-nano", 0.2))
EVENT_TIERS = (("standard", 0.74), ("batch", 0.15), ("priority", 0.05), ("flex", 0.06))
RESET_TABLES = ("metering_customer", "metering_usage_segment", "metering_usage_boundary",
                "metering_consumer_watermark", *LEDGER_TABLES)


def customer_ids(customers: int) -> list[str]:
    return [f"c{rank:05d}" for rank in range(customers)]


def activity_weights(customers: int) -> list[float]:
    """bench/rating.py's long tail: a customer's share of hours, heavier ranks more often."""
    return [min(0.6, 0.05 + 3 / (rank + 5)) for rank in range(customers)]


# --- setup -----------------------------------------------------------------------


def data_seed(*, customers: int, seed: int, now: datetime) -> dict:
    from django.db import connection

    from bench.rating import seed_catalog_prices_contracts, seed_rollups
    from billing.selectors import month_bounds
    from billing.services.credits import credit_grant
    from billing.services.price_books import price_book_create
    from metering.models import Customer
    from metering.projections import SEGMENT_OF_ROLLUPS
    from metering.services import SEGMENT_COLUMNS
    from scripts.demo_pricing import MID_MONTH_CHANGE, SERVICE_TIER_FACTORS, price_list

    began = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(RESET_TABLES)} CASCADE")
    rng, hour = random.Random(seed), now.replace(minute=0, second=0, microsecond=0)
    start = hour - timedelta(days=30)
    seed_catalog_prices_contracts(customers=customers, start=start, rng=rng)
    month_start, month_end = month_bounds(now)
    change_at = hour.replace(hour=0)
    if change_at > month_start:  # mini output 4.50 → 4.00 per 1M, on top of rating's frontier output cut
        prices = [{**p, "unit_price": Decimal("4.00") * SERVICE_TIER_FACTORS[p["service_tier"]]}
                  if (p["model_tier"], p["token_class"]) == ("mini", "output") else p
                  for p in price_list(change=MID_MONTH_CHANGE)]
        price_book_create(effective_from=change_at, currency="USD", prices=prices, note="bench: mini output cut",
                          actor="bench", as_of=now)
    Customer.objects.create(customer_id=PROBE, name="Probe of the produce → balance lag")
    for customer_id in rng.sample(customer_ids(customers), customers // 10):
        credit_grant(customer_id=customer_id, amount=Decimal(200), reason="bench", actor="bench", as_of=now)
    rows = seed_rollups(customers=customers, start=start, rng=rng)
    previous_start = month_bounds(month_start - timedelta(days=1))[0]
    with connection.cursor() as cursor:
        for lower, upper in ((previous_start, month_start), (month_start, month_end)):
            cursor.execute(f"INSERT INTO metering_usage_segment ({SEGMENT_COLUMNS}) {SEGMENT_OF_ROLLUPS}",
                           {"start": lower, "end": upper})
        cursor.execute("SELECT count(*) FILTER (WHERE starts_at >= %s), count(*) FROM metering_usage_segment",
                       [month_start])
        segments_current, segments = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM metering_hourly_rollup WHERE hour >= %s", [month_start])
        rows_current = cursor.fetchone()[0]
        cursor.execute("ANALYZE")
    return {"hourly_rollups": rows, "hourly_rollups_current_month": rows_current, "rollups_from": start.isoformat(),
            "rollups_to": hour.isoformat(), "usage_segments": segments,
            "usage_segments_current_month": segments_current, "price_change_today": change_at > month_start,
            "seconds": round(time.perf_counter() - began, 1)}


def spends_compute(*, customers: int, chunk: int, singles: int, seed: int, now: datetime) -> dict:
    """Every Spend row once, budgets on 60%, then the timed cold pass and single misses."""
    from django.db import connection, transaction

    from billing.models import Spend
    from billing.services.spend import budget_put, spends_forget, spends_refresh

    ids, rng = customer_ids(customers) + [PROBE], random.Random(seed + 1)
    chunks = [ids[i:i + chunk] for i in range(0, len(ids), chunk)]
    for part in chunks:
        spends_refresh(customer_ids=part, as_of=now)
    spent = dict(Spend.objects.values_list("customer__customer_id", "spend"))
    budgeted = sorted(rng.sample(ids[:-1], customers * 6 // 10))
    for rank, customer_id in enumerate(budgeted):
        factor = Decimal(f"{rng.uniform(0.6, 3.0):.3f}")
        limit = max(Decimal("1.00"), (spent[customer_id] * factor).quantize(Decimal("0.01")))
        budget_put(customer_id=customer_id, monthly_limit=limit, thresholds=[50, 80, 100], hard=rank % 3 == 0,
                   actor="bench", as_of=now)
    with transaction.atomic():
        spends_forget(customer_ids=None, as_of=now)
    began = time.perf_counter()
    for part in chunks:
        spends_refresh(customer_ids=part, as_of=now)
    cold_s = time.perf_counter() - began
    sample = rng.sample(ids[:-1], singles)
    with transaction.atomic():
        spends_forget(customer_ids=sample, as_of=now)
    single_ms = []
    for customer_id in sample:
        began = time.perf_counter()
        spends_refresh(customer_ids=[customer_id], as_of=now)
        single_ms.append((time.perf_counter() - began) * 1000)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), count(*) FILTER (WHERE spend >= b.monthly_limit AND b.hard), "
                       "sum(spend) FROM billing_spend s LEFT JOIN billing_budget b USING (customer_id)")
        rows, hard_reached, total = cursor.fetchone()
    return {"spend_rows": rows, "budgets": len(budgeted), "hard_budgets_reached": hard_reached,
            "spend_total_usd": f"{total:.2f}", "cold_pass_s": round(cold_s, 2), "chunk_customers": chunk,
            "cold_ms_per_customer": round(cold_s * 1000 / len(ids), 2),
            "single_refresh_ms": distribution(single_ms), "budgeted": budgeted}


def api_key(label: str) -> str:
    from metering.services import api_key_create

    return api_key_create(scope="admin", name=f"bench balance {label} {time.strftime('%H:%M:%S')}")[1]


def in_process(*, paths: dict[str, list[str]], calls: int, now: datetime) -> dict:
    """Per call, without HTTP, wall and CPU ms of this process (Postgres and Redis work in
    theirs): the balance's service alone, the API key lookup and the throttle of the DRF
    views, each read phase's GET through the WSGI application gunicorn serves
    (config.wsgi: the balance hot path in front of Django), and GET balance through the
    DRF view (the test Client skips config.wsgi: the path every other case takes)."""
    from types import SimpleNamespace

    from django.test import Client

    from billing.services.spend import balance_read
    from config.api import ApiKeyAuthentication, KeyRateThrottle
    from config.wsgi import application

    rng, figures = random.Random(5), {}

    def timed(name: str, call) -> None:
        statuses = set()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            statuses.add(call())
        figures[name] = {"wall_ms": round((time.perf_counter() - wall) * 1000 / calls, 3),
                         "cpu_ms": round((time.process_time() - cpu) * 1000 / calls, 3)}
        if statuses - {None}:
            figures[name]["statuses"] = sorted(statuses)

    customers = [path.split("/")[4] for path in paths["balance"]]
    timed("balance_read", lambda: balance_read(customer_id=rng.choice(customers), as_of=now) and None)
    key = api_key("in-process")
    request = SimpleNamespace(META={"HTTP_AUTHORIZATION": f"Bearer {key}"}, auth=None)
    request.auth = ApiKeyAuthentication().authenticate(request)[1]
    timed("key_auth", lambda: ApiKeyAuthentication().authenticate(request) and None)
    timed("throttle", lambda: KeyRateThrottle().allow_request(request, SimpleNamespace(throttle_scope="balance"))
          and None)
    for name, pool in paths.items():
        timed(f"wsgi_{name}", lambda pool=pool: wsgi_get(application, rng.choice(pool), key))
    client, headers = Client(), {"Authorization": f"Bearer {key}"}
    timed("drf_view_balance", lambda: client.get(rng.choice(paths["balance"]), headers=headers).status_code)
    return figures


def wsgi_get(application, path: str, key: str) -> int:
    """One GET through a WSGI application, as a server calls it; the status."""
    environ, answer = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "HTTP_AUTHORIZATION": f"Bearer {key}"}, []
    setup_testing_defaults(environ)
    result = application(environ, lambda status, headers, exc_info=None: answer.append(status))
    try:
        b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()  # Django's request_finished, as gunicorn triggers it
    return int(answer[0][:3])


# --- the server and the load process ---------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (their threads included)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except FileNotFoundError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def workers_of(master: subprocess.Popen) -> list[int]:
    return [int(p) for p in Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()]


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of every CPU so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


class Connection:
    """One keep-alive connection, reopened whenever the server closes it."""

    def __init__(self, port: int, key: str):
        self.port, self.headers, self.http = port, {"Authorization": f"Bearer {key}"}, None

    def get(self, path: str) -> tuple[str, bytes]:
        if self.http is None:
            self.http = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            self.http.request("GET", path, headers=self.headers)
            response = self.http.getresponse()
            body = response.read()
            if response.will_close:
                self.close()
            return str(response.status), body
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return type(exc).__name__, b""

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None


def reads_run(*, port: int, key: str, paths: list[str], connections: int, duration_s: float, warmup: int,
              lags: bool) -> dict:
    """The load process: `warmup` untimed GETs, each on a new connection (so that every
    worker gets some), then `connections` threads back to back."""
    warm, warmup_failures = Connection(port, key), {}
    for path in random.Random(0).choices(paths, k=warmup):
        status, _ = warm.get(path)
        warm.close()
        if status != "200":
            warmup_failures[status] = warmup_failures.get(status, 0) + 1
    latencies, lag_ms, failures, done_at, lock = [], [], {}, [], threading.Lock()
    cpu_before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    deadline = started + duration_s

    def worker(rank: int) -> None:
        connection, rng = Connection(port, key), random.Random(rank)
        while (sent := time.perf_counter()) < deadline:
            status, body = connection.get(rng.choice(paths))
            read = time.perf_counter()
            with lock:
                latencies.append((read - sent) * 1000)
                done_at.append(read - started)
                if status != "200":
                    failures[status] = failures.get(status, 0) + 1
                elif lags:
                    lag_ms.append(json.loads(body)["lag_ms"])
        connection.close()

    threads = [threading.Thread(target=worker, args=(rank,)) for rank in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds, cpu = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    windows = [0] * (int(seconds // WINDOW_S) + 1)
    for at in done_at:
        windows[int(at // WINDOW_S)] += 1
    return {"reads": len(latencies), "seconds": round(seconds, 2), "reads_per_s": round(len(latencies) / seconds),
            "latency_ms": distribution(latencies), "non_200": failures, "warmup_non_200": warmup_failures,
            "reads_per_s_by_5s": [round(n / WINDOW_S) for n in windows[:int(seconds // WINDOW_S)]],
            "load_process_cpu_s": round(cpu.ru_utime + cpu.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime, 2),
            **({"lag_ms": distribution(lag_ms)} if lags else {})}


def reads_phase(pool, master, **kwargs) -> dict:
    """reads_run in the load process, with the server's and the machine's CPU around it."""
    workers, busy_before, load = workers_of(master), machine_busy(), os.getloadavg()[0]
    workers_before = cpu_seconds(workers)
    figures = pool.submit(reads_run, **kwargs).result()
    figures["load_avg_1m_at_start"] = round(load, 2)
    busy_after = machine_busy()
    figures["gunicorn_workers_cpu_s"] = round(cpu_seconds(workers) - workers_before, 2)
    figures["gunicorn_cpu_ms_per_read"] = round(figures["gunicorn_workers_cpu_s"] * 1000 / max(figures["reads"], 1), 2)
    figures["machine_busy_share"] = round((busy_after[0] - busy_before[0]) / (busy_after[1] - busy_before[1]), 2)
    return figures


def paths_of(ids: list[str], budgeted: list[str]) -> dict[str, list[str]]:
    return {"balance": [f"/api/v1/customers/{c}/balance" for c in ids],
            "budget": [f"/api/v1/customers/{c}/budget" for c in budgeted], "healthz": ["/healthz"]}


def reads_measure(*, server: str, env: dict, paths: dict, args) -> dict:
    port, figures = local_kafka.free_port(), {"server": server}
    with gunicorn(port=port, env=env, server=server) as master, \
            ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        for name in ("balance", "budget", "healthz"):
            figures[name] = reads_phase(pool, master, port=port, key=api_key(name), paths=paths[name],
                                        connections=args.connections, duration_s=args.read_duration_s,
                                        warmup=args.warmup, lags=False)
    balance, budget = figures["balance"], figures["budget"]
    figures["balance_over_baseline"] = {
        "reads_per_s": round(balance["reads_per_s"] / budget["reads_per_s"], 2),
        "latency_p99": round(balance["latency_ms"]["p99"] / budget["latency_ms"]["p99"], 2)}
    figures["targets"] = {"reads_per_s": target(balance["reads_per_s"], at_least=1_000),
                          "latency_ms_p99": target(balance["latency_ms"]["p99"], below=20)}
    return figures


# --- lag: producer, probe and a timed consumer -----------------------------------------------


def events_produce_paced(*, bootstrap: str, topic: str, rate: float, per_message: int, duration_s: float,
                         customers: int, result) -> None:
    """In a process of its own: `rate` events/s as arrays of `per_message` events of one customer."""
    from kafka import KafkaProducer

    from metering.topics import PRODUCER_CONFIG

    ids, rng = customer_ids(customers), random.Random(11)
    cumulative, total = [], 0.0
    for weight in activity_weights(customers):
        total += weight
        cumulative.append(total)
    (model_names, model_weights), (tier_names, tier_weights) = zip(*EVENT_MODELS), zip(*EVENT_TIERS)
    producer = KafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_CONFIG)
    sent = messages = 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < duration_s:
        served_at = datetime.now(UTC).isoformat()
        while sent < int(rate * elapsed):
            customer = rng.choices(ids, cum_weights=cumulative)[0]
            body = []
            for model, tier in zip(rng.choices(model_names, model_weights, k=per_message),
                                   rng.choices(tier_names, tier_weights, k=per_message)):
                input_tokens = rng.randint(200, 4000)
                body.append({"event_id": f"{topic}-{sent:09d}", "customer_id": customer, "model": model,
                             "timestamp": served_at, "input_tokens": input_tokens,
                             "cached_input_tokens": input_tokens // rng.choice((2, 4, 10**9)),
                             "output_tokens": rng.randint(50, 800), "service_tier": tier, "region": "us-east"})
                sent += 1
            producer.send(topic, key=customer.encode(), value=json.dumps(body, separators=(",", ":")).encode())
            messages += 1
        time.sleep(PACE_S)
    producer.flush()
    ended_s = time.monotonic()
    producer.close()
    result.put({"sent": sent, "messages": messages, "seconds": round(ended_s - started, 2), "ended_s": ended_s,
                "events_per_s": round(sent / (ended_s - started))})


class Probe:
    """One known event every PROBE_EVERY_S; a thread polls its balance until spend counts it.

    Each poll also checks the balance's promise, "every event produced before as_of is
    counted": a probe acknowledged by the broker before the as_of of a response that does
    not count it yet breaks it (`as_of_claims_uncounted`)."""

    def __init__(self, *, bootstrap: str, topic: str, port: int, key: str):
        from kafka import KafkaProducer

        from metering.topics import PRODUCER_CONFIG

        self.producer, self.topic = KafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_CONFIG), topic
        self.connection = Connection(port, key)
        self.path = f"/api/v1/customers/{PROBE}/balance"
        self.sent_ns, self.acked_ns, self.visible_ns = [], [], []
        self.polls = []  # (as_of ns, probes counted, lag_ms, poll ms)
        self.base = None
        self.stop = threading.Event()

    def balance(self) -> dict | None:
        status, body = self.connection.get(self.path)
        return json.loads(body) if status == "200" else None

    def send(self, label: str) -> None:
        sent_ns = time.time_ns()
        self.producer.send(self.topic, key=PROBE.encode(), value=json.dumps({
            "event_id": f"probe-{label}-{sent_ns}", "customer_id": PROBE, "model": "gpt-5.4",
            "timestamp": datetime.now(UTC).isoformat(), "input_tokens": PROBE_INPUT_TOKENS, "output_tokens": 0,
            "service_tier": "standard", "region": "us-east"}).encode())
        self.producer.flush()  # acks=all: produced once this returns
        if label != "warm":
            self.sent_ns.append(sent_ns)
            self.acked_ns.append(time.time_ns())

    def warm_up(self, timeout_s: float = 90) -> None:
        """One probe event until the consumer has joined and its balance counts it."""
        before = Decimal(self.balance()["spend"])
        self.send("warm")
        deadline = time.monotonic() + timeout_s
        while (answer := self.balance()) is None or Decimal(answer["spend"]) < before + PROBE_AMOUNT:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the probe's balance did not count its warm-up event within {timeout_s} s")
            time.sleep(PROBE_POLL_S)
        self.base = Decimal(answer["spend"])

    def poll(self) -> None:
        while not self.stop.is_set():
            began = time.perf_counter()
            answer = self.balance()
            read_ns, poll_ms = time.time_ns(), (time.perf_counter() - began) * 1000
            if answer is not None:
                counted = min(int((Decimal(answer["spend"]) - self.base) / PROBE_AMOUNT), len(self.sent_ns))
                while len(self.visible_ns) < counted:
                    self.visible_ns.append(read_ns)
                as_of_ns = int(datetime.fromisoformat(answer["as_of"]).timestamp() * 1e9)
                self.polls.append((as_of_ns, counted, answer["lag_ms"], poll_ms))
            time.sleep(PROBE_POLL_S)

    def run(self, *, duration_s: float, drain_max_s: float, sent) -> None:
        """Probes for duration_s (then `sent()`), and polls until every one is counted."""
        poller = threading.Thread(target=self.poll)
        poller.start()
        started = time.monotonic()
        while time.monotonic() - started < duration_s:
            self.send(str(len(self.sent_ns)))
            time.sleep(max(0.0, len(self.sent_ns) * PROBE_EVERY_S - (time.monotonic() - started)))
        sent()
        deadline = time.monotonic() + drain_max_s
        while len(self.visible_ns) < len(self.sent_ns) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stop.set()
        poller.join()
        self.producer.close()
        self.connection.close()

    def figures(self) -> dict:
        latencies = [(v - s) / 1e6 for s, v in zip(self.sent_ns, self.visible_ns)]
        overstated = [(as_of - self.acked_ns[counted]) / 1e6 for as_of, counted, _, _ in self.polls
                      if bisect.bisect_left(self.acked_ns, as_of) > counted]
        return {"probes_sent": len(self.sent_ns), "probes_seen": len(self.visible_ns),
                "produce_to_balance_ms": distribution(latencies),
                "probe_polls_lag_ms": distribution([lag for _, _, lag, _ in self.polls]),
                "resolution_ms": round(PROBE_POLL_S * 1000 + distribution([ms for *_, ms in self.polls])["p99"], 1),
                "as_of_claims_uncounted": {"polls": len(self.polls), "polls_breaking": len(overstated),
                                           "by_ms": distribution(overstated)}}


def consumer_start(*, bootstrap: str, topic: str, dlq_topic: str) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-m", "bench.balance", "consume", "--bootstrap", bootstrap, "--topic", topic,
                             "--dlq-topic", dlq_topic, "--group", f"{topic}-ledger", "--idle-exit-s", "5"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)


def lag_measure(*, bootstrap: str, env: dict, paths: dict, rate: float, args) -> dict:
    topic, dlq_topic = topics_fresh(bootstrap, "balance")
    env = {**env, "KAFKA_USAGE_TOPIC": topic, "KAFKA_USAGE_DLQ_TOPIC": dlq_topic}
    port, server = local_kafka.free_port(), args.servers[0]
    context, busy, load = get_context("spawn"), [], []
    with gunicorn(port=port, env=env, server=server) as master, ProcessPoolExecutor(1, mp_context=context) as pool:
        consumer = consumer_start(bootstrap=bootstrap, topic=topic, dlq_topic=dlq_topic)
        probe = Probe(bootstrap=bootstrap, topic=topic, port=port, key=api_key("probe"))
        probe.warm_up()
        busy.append(machine_busy())
        load.append(os.getloadavg()[0])
        reads = pool.submit(reads_run, port=port, key=api_key("lag"), paths=paths["balance"],
                            connections=args.connections, duration_s=args.lag_duration_s, warmup=0, lags=True)
        result = context.Queue()
        producer = context.Process(target=events_produce_paced, kwargs=dict(
            bootstrap=bootstrap, topic=topic, rate=rate, per_message=args.events_per_message,
            duration_s=args.lag_duration_s, customers=args.customers, result=result))
        producer.start()
        probe.run(duration_s=args.lag_duration_s, drain_max_s=args.drain_max_s,
                  sent=lambda: (busy.append(machine_busy()), load.append(os.getloadavg()[0])))
        produced = result.get(timeout=120)
        producer.join(timeout=30)
        reads = reads.result()
        consumed = json.loads(consumer.communicate(timeout=args.drain_max_s + 120)[0].strip().splitlines()[-1])
    consumed["events_per_s_while_producing"] = round(sum(
        events for at_s, events in consumed.pop("committed") if at_s <= produced["ended_s"]) / produced["seconds"])
    consumed["drain_after_producer_s"] = round(consumed.pop("last_s") - produced.pop("ended_s"), 2)
    consumed.pop("first_s")
    return {"server": server, "events_per_s": rate, "events_per_message": args.events_per_message,
            "produced": produced, "consumer": consumed, **probe.figures(), "reads_while_producing": reads,
            "machine_busy_share_while_producing": round((busy[1][0] - busy[0][0]) / (busy[1][1] - busy[0][1]), 2),
            "load_avg_1m": {"producing_start": round(load[0], 2), "producing_end": round(load[1], 2)}}


def consume_main(argv: list[str]) -> None:
    """`python -m bench.balance consume ...`: bench._consume's ledger run, with every
    batch and its spends_refresh timed (wrapped here; the consumer's code is unchanged)."""
    from bench._consume import Clock, commit_timed, consumer_config, poll_timed

    parser = argparse.ArgumentParser(prog="bench.balance consume")
    for name in ("--bootstrap", "--topic", "--dlq-topic", "--group"):
        parser.add_argument(name, required=True)
    parser.add_argument("--idle-exit-s", type=float, default=5.0)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from metering.consumer import runner

    batches, refreshes = [], []
    refresh, process = runner.spends_refresh, runner.LedgerConsumer._process

    def refresh_timed(*, customer_ids, as_of):
        began = time.perf_counter()
        rows = refresh(customer_ids=customer_ids, as_of=as_of)
        refreshes.append((len(customer_ids), time.perf_counter() - began))
        return rows

    def process_timed(self, records):
        began, events = time.perf_counter(), self.stats.events
        process(self, records)
        batches.append((self.stats.events - events, time.perf_counter() - began, time.monotonic()))

    runner.spends_refresh, runner.LedgerConsumer._process = refresh_timed, process_timed
    config = consumer_config(args)
    consumer, clock = runner.kafka_consumer(config), Clock()
    poll_timed(consumer, clock)
    commit_timed(consumer, clock)
    stats = runner.LedgerConsumer(config, consumer=consumer).run(threading.Event())
    batch_s, refresh_s = sum(s for _, s, _ in batches), sum(s for _, s in refreshes)
    print(json.dumps({
        "events": stats.events, "appended": stats.appended, "dead_letters": stats.dead_letters,
        "batches": stats.batches, "seconds": clock.seconds(), **clock.marks(),
        "events_per_s": round(stats.events / clock.seconds()) if clock.seconds() else None,
        "committed": [(at_s, events) for events, _, at_s in batches],
        "events_per_batch": distribution([e for e, _, _ in batches], digits=0),
        "batch_ms": distribution([s * 1000 for _, s, _ in batches]),
        "refresh_ms": distribution([s * 1000 for _, s in refreshes]),
        "refresh_customers_per_batch": distribution([n for n, _ in refreshes], digits=0),
        "refresh_ms_per_customer": round(refresh_s * 1000 / max(sum(n for n, _ in refreshes), 1), 3),
        "refresh_share_of_batch_time": round(refresh_s / batch_s, 3) if batch_s else None,
    }))


# --- figures ---------------------------------------------------------------------


def distribution(values: list[float], digits: int = 1) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    cut = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else ordered * 99
    return {"p50": round(cut[49], digits), "p99": round(cut[98], digits), "max": round(ordered[-1], digits),
            "mean": round(sum(ordered) / len(ordered), digits), "n": len(ordered)}


def main() -> None:
    if sys.argv[1:2] == ["consume"]:
        return consume_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=100, help="Customers per spends_refresh in the cold pass.")
    parser.add_argument("--singles", type=int, default=50, help="Customers recomputed one at a time.")
    parser.add_argument("--servers", type=lambda s: s.split(","), default=["sync:2", "gthread:2:4"],
                        help="gunicorn configurations, comma-separated: sync:W or gthread:W:T; the lag uses the first.")
    parser.add_argument("--connections", type=int, default=8, help="Concurrent client connections.")
    parser.add_argument("--read-duration-s", type=float, default=60.0)
    parser.add_argument("--warmup", type=int, default=200, help="Untimed GETs before each read phase.")
    parser.add_argument("--read-rate", default="300000/min",
                        help="BALANCE_READ_RATE and API_READ_RATE of the app (the balance's default).")
    parser.add_argument("--events-per-s", type=lambda s: [float(r) for r in s.split(",")], default=[20_000.0],
                        help="Produced rates of the lag runs, comma-separated (one run each).")
    parser.add_argument("--drain-max-s", type=float, default=600.0,
                        help="How long after producing the probes may take to be counted.")
    parser.add_argument("--events-per-message", type=int, default=25)
    parser.add_argument("--lag-duration-s", type=float, default=60.0)
    parser.add_argument("--in-process-calls", type=int, default=2_000)
    parser.add_argument("--skip-lag", action="store_true")
    parser.add_argument("--database-url", default=DATABASE_URL_DEFAULT)
    args = parser.parse_args()
    measured_under = conditions()
    os.environ.update(BALANCE_READ_RATE=args.read_rate, API_READ_RATE=args.read_rate)  # in process as in gunicorn
    database_create(args.database_url)
    with broker() as bootstrap:
        django_start(database_url=args.database_url, bootstrap=bootstrap)
        now = datetime.now(UTC)
        setup = data_seed(customers=args.customers, seed=args.seed, now=now)
        spends = spends_compute(customers=args.customers, chunk=args.chunk, singles=args.singles, seed=args.seed,
                                now=now)
        budgeted = spends.pop("budgeted")
        ids = customer_ids(args.customers)
        paths = paths_of(ids, budgeted)
        direct = in_process(paths=paths, calls=args.in_process_calls, now=datetime.now(UTC))
        env = {"DATABASE_URL": args.database_url, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
               "BALANCE_READ_RATE": args.read_rate, "API_READ_RATE": args.read_rate}
        reads = [reads_measure(server=server, env=env, paths=paths, args=args) for server in args.servers]
        lags = [] if args.skip_lag else [lag_measure(bootstrap=bootstrap, env=env, paths=paths, rate=rate, args=args)
                                         for rate in args.events_per_s]
    first = reads[0]
    figures_print({
        "conditions": measured_under, "customers": args.customers, "connections": args.connections,
        "read_rate_setting": args.read_rate, "setup": setup, "spends": spends, "in_process": direct,
        "reads": reads, "lag": lags,
        "targets": {**{f"{k} ({first['server']})": v for k, v in first["targets"].items()},
                    **{f"produce_to_balance_ms_p99 at {lag['events_per_s']:.0f} events/s": {
                        "measured": lag["produce_to_balance_ms"].get("p99"),
                        "target": "reported; issue #13 sets no figure"} for lag in lags}},
        "timing": "latency: request sent to response read, in the load process (its own process, same machine); "
                  "produce → balance: the probe's send() to the read of the first balance response counting it",
    })


if __name__ == "__main__":
    main()
