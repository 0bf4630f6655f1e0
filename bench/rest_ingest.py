"""REST ingestion throughput and latency: POST /api/v1/usage-events under gunicorn.

    .venv/bin/python -m bench.rest_ingest [--requests 2000] [--connections 4]

Sets up the bench database and the broker as bench.ingest does, makes an ingest API
key with metering.services.api_key_create, and starts `gunicorn config.wsgi -w 2` on
a free loopback port, pointed at the bench database, the broker, a fresh 6-partition
topic and USAGE_INGEST_RATE=1000000/min (so the throttle never refuses).

A separate load process builds every body before the clock starts: {"events": [...]}
with --events-per-request valid events from scripts/traffic.py (no duplicates,
conflicts or invalid events; served within the last day, inside the 35-day lateness
rule). It sends --warmup requests untimed (each worker opens its Kafka producer on
its first request), then --connections threads post the rest, each request on a new
TCP connection (gunicorn's sync worker closes every one), until the bodies run out
or --duration-max-s has passed.

Figures, as JSON: accepted events/s = events acknowledged in 202 responses / seconds
from the first timed request sent to the last response read; p50 and p99 latency of
a request (send to response read), in ms; non-202 responses.
"""

import argparse
import http.client
import json
import statistics
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

from bench._setup import (
    DATABASE_URL_DEFAULT, broker, conditions, database_create, django_start, figures_print, target,
    gunicorn, topics_fresh, traffic,
)
from scripts import local_kafka

PATH = "/api/v1/usage-events"
INGEST_RATE = "1000000/min"
WORKERS = 2
TRAFFIC_SEED = 3


@dataclass
class Outcome:
    latencies_ms: list[float] = field(default_factory=list)
    accepted: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    started_s: float = 0.0
    ended_s: float = 0.0


def bodies_build(*, requests: int, events_per_request: int) -> list[bytes]:
    source = traffic(seed=TRAFFIC_SEED, clean=True)
    events = [event for _, event, _ in source.elements(requests * events_per_request)]
    return [
        json.dumps({"events": events[start:start + events_per_request]}, separators=(",", ":")).encode()
        for start in range(0, len(events), events_per_request)
    ]


def post(port: int, api_key: str, body: bytes) -> tuple[str, int]:
    """One request; returns the status (or the connection error) and the events accepted."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", PATH, body=body, headers={
            "Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
        })
        response = connection.getresponse()
        answer = response.read()
        return str(response.status), json.loads(answer)["accepted"] if response.status == 202 else 0
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__, 0
    finally:
        connection.close()


def load_run(*, port: int, api_key: str, requests: int, events_per_request: int, warmup: int,
             connections: int, duration_max_s: float) -> Outcome:
    """The load process: bodies first, warm-up, then the timed concurrent posts."""
    bodies = bodies_build(requests=requests + warmup, events_per_request=events_per_request)
    for body in bodies[:warmup]:
        post(port, api_key, body)
    pending, outcome, lock = iter(bodies[warmup:]), Outcome(), threading.Lock()
    outcome.started_s = time.perf_counter()
    deadline = outcome.started_s + duration_max_s

    def worker() -> None:
        while time.perf_counter() < deadline:
            with lock:
                body = next(pending, None)
            if body is None:
                return
            sent_s = time.perf_counter()
            status, accepted = post(port, api_key, body)
            with lock:
                outcome.latencies_ms.append((time.perf_counter() - sent_s) * 1000)
                outcome.accepted += accepted
                if status != "202":
                    outcome.failures[status] = outcome.failures.get(status, 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcome.ended_s = time.perf_counter()
    return outcome


def ingest_key() -> str:
    from metering.services import api_key_create

    _, raw_key = api_key_create(scope="ingest", name=f"bench {time.strftime('%Y-%m-%d %H:%M:%S')}")
    return raw_key


def figures(outcome: Outcome, *, args) -> dict:
    seconds = outcome.ended_s - outcome.started_s
    percentiles = statistics.quantiles(outcome.latencies_ms, n=100, method="inclusive")
    events_per_s = round(outcome.accepted / seconds)
    return {
        "requests": len(outcome.latencies_ms), "events_per_request": args.events_per_request,
        "connections": args.connections, "gunicorn_workers": WORKERS,
        "accepted_events": outcome.accepted, "seconds": round(seconds, 3), "accepted_events_per_s": events_per_s,
        "latency_ms_p50": round(percentiles[49], 1), "latency_ms_p99": round(percentiles[98], 1),
        "failures_by_status": outcome.failures,  # status code or connection error
        "targets": {"accepted_events_per_s": target(events_per_s, at_least=20_000)},
        "timing": "first timed request sent to last response read, after untimed warm-up requests; "
                  "load generator in its own process on the same machine",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2_000, help="Timed requests at most.")
    parser.add_argument("--events-per-request", type=int, default=500)
    parser.add_argument("--connections", type=int, default=4, help="Concurrent client connections.")
    parser.add_argument("--warmup", type=int, default=10, help="Untimed requests sent first.")
    parser.add_argument("--duration-max-s", type=float, default=120.0)
    parser.add_argument("--database-url", default=DATABASE_URL_DEFAULT)
    args = parser.parse_args()
    measured_under = conditions()
    database_create(args.database_url)
    with broker() as bootstrap:
        django_start(database_url=args.database_url, bootstrap=bootstrap)
        topic, dlq_topic = topics_fresh(bootstrap, "rest")
        env = {"DATABASE_URL": args.database_url, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_USAGE_TOPIC": topic,
               "KAFKA_USAGE_DLQ_TOPIC": dlq_topic, "USAGE_INGEST_RATE": INGEST_RATE}
        port, api_key = local_kafka.free_port(), ingest_key()
        with gunicorn(port=port, env=env, server=f"sync:{WORKERS}"), ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            outcome = pool.submit(
                load_run, port=port, api_key=api_key, requests=args.requests,
                events_per_request=args.events_per_request, warmup=args.warmup,
                connections=args.connections, duration_max_s=args.duration_max_s,
            ).result()
    figures_print({"conditions": measured_under, **figures(outcome, args=args)})


if __name__ == "__main__":
    main()
