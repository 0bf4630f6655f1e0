"""Each kind of process serves its metrics, for real: gunicorn with two workers summed in
multiprocess mode (a worker that exits keeps its counts), gunicorn with Postgres away,
the ledger consumer on its own port, a prefork Celery worker on its own port."""

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import connection
from prometheus_client.mmap_dict import MmapedDict

from billing.models import WebhookDelivery, WebhookEndpoint
from billing.tasks import webhook_deliver_task
from scripts.local_kafka import free_port, port_open
from tests.conftest import TEST_SESSION_TIMEOUT_MS
from tests.metering.factories import event
from tests.metering.kafka_helpers import send
from tests.operations.conftest import http_get, value, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
GUNICORN = str(Path(sys.executable).parent / "gunicorn")


def database_url_of_tests() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@contextmanager
def process(command: list[str], *, env: dict, port: int):
    """A process of the app, once it listens on port; SIGTERM on the way out."""
    started = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "LOG_LEVEL": "WARNING", **env},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: port_open("127.0.0.1", port) or started.poll() is not None, timeout_s=60,
                 what=f"{command[:3]} to listen")
        assert started.poll() is None, started.stderr.read()[-3000:]
        yield started
    finally:
        started.send_signal(signal.SIGTERM)
        started.wait(timeout=60)


def gunicorn(*, port: int, env: dict):
    return process([GUNICORN, "-c", "config/gunicorn.py", "config.wsgi", "-w", "2", "-b", f"127.0.0.1:{port}",
                    "--log-level", "warning"], env=env, port=port)


def healthz_served_by_pid(metrics_dir: Path) -> Counter:
    """Per worker pid, the /healthz requests its counter file holds."""
    served = Counter()
    for path in metrics_dir.glob("counter_*.db"):
        for key, count, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            _, sample, labels, _ = json.loads(key)
            if sample == "tokenledger_http_requests_total" and labels["route"] == "healthz":
                served[path.stem.rsplit("_", 1)[1]] += count
    return served


def test_gunicorn_sums_both_workers_and_keeps_an_exited_workers_counts(topics, kafka_bootstrap, tmp_path):
    port, metrics_dir = free_port(), tmp_path / "prometheus"
    env = {"DATABASE_URL": database_url_of_tests(), "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "KAFKA_USAGE_TOPIC": topics["usage"], "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    base = f"http://127.0.0.1:{port}"
    with gunicorn(port=port, env=env) as master, ThreadPoolExecutor(8) as pool:
        sent = 0

        def both_workers_served():
            nonlocal sent
            statuses = list(pool.map(lambda _: http_get(f"{base}/healthz")[0], range(40)))
            sent += len(statuses)
            assert set(statuses) == {200}
            return len(healthz_served_by_pid(metrics_dir)) == 2

        wait_for(both_workers_served, timeout_s=60, what="both workers to answer /healthz")
        ready = http_get(f"{base}/readyz")
        summed = value(http_get(f"{base}/metrics")[1], "tokenledger_http_requests_total", route="healthz")
        one_worker = int(next(iter(healthz_served_by_pid(metrics_dir))))
        os.kill(one_worker, signal.SIGTERM)
        wait_for(lambda: len(worker_pids(master.pid) - {one_worker}) == 2, what="gunicorn to replace the worker")
        after_exit = value(http_get(f"{base}/metrics")[1], "tokenledger_http_requests_total", route="healthz")

    assert ready[0] == 200, ready[1]
    assert summed == sent
    assert after_exit == sent


def worker_pids(master_pid: int) -> set[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return {int(pid) for pid in children}


def test_with_postgres_away_gunicorn_is_alive_but_not_ready(topics, kafka_bootstrap):
    port = free_port()
    env = {"DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/nowhere",
           "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_USAGE_TOPIC": topics["usage"]}
    with gunicorn(port=port, env=env):
        alive = http_get(f"http://127.0.0.1:{port}/healthz")
        ready = http_get(f"http://127.0.0.1:{port}/readyz")
        metrics = http_get(f"http://127.0.0.1:{port}/metrics")

    body = json.loads(ready[1])
    assert alive[0] == 200
    assert ready[0] == 503 and body["failing"] == ["database"] and body["detail"].startswith("database: ")
    assert body["checks"]["kafka"]["ok"]
    assert metrics[0] == 200 and value(metrics[1], "tokenledger_facts_up") == 0


def test_the_consumer_serves_its_counters_and_lag_on_its_port(catalog, topics, producer, kafka_bootstrap):
    port = free_port()
    for body in [event(), event(), event(model="gpt-unknown")]:
        send(producer, topics["usage"], body)
    producer.flush()
    command = [sys.executable, "manage.py", "consume_usage", "--topic", topics["usage"], "--dlq-topic",
               topics["dlq"], "--group", topics["group"], "--session-timeout-ms", str(TEST_SESSION_TIMEOUT_MS)]
    env = {"DATABASE_URL": database_url_of_tests(), "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "METRICS_PORT": str(port)}
    with process(command, env=env, port=port) as consumer:
        def drained():
            text = http_get(f"http://127.0.0.1:{port}/metrics")[1]
            done = value(text, "tokenledger_ingest_events_total", outcome="accepted") == 2
            return done and value(text, "tokenledger_ingest_events_total", outcome="dead_letter") == 1 and text

        text = wait_for(drained, timeout_s=60, what="the consumer to count the events")
    lags = [line for line in text.splitlines() if line.startswith("tokenledger_consumer_lag_messages{")]

    assert consumer.returncode == 0
    assert value(text, "tokenledger_ingest_dead_letters_total", kind="invalid", reason="model_unknown") == 1
    assert len(lags) == 3 and value(text, "tokenledger_consumer_lag_messages") == 0
    assert "tokenledger_billing_runs_total" not in text  # facts are the web's; this port shows this process


class Receiver(threading.Thread):
    """A webhook receiver answering 500 to its first request and 200 after."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        answered = self.answered = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                answered.append(500 if not answered else 200)
                self.send_response(answered[-1])
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        super().__init__(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"


def test_a_prefork_worker_sums_its_childrens_task_and_webhook_counters_on_its_port(tmp_path):
    port, queue, receiver = free_port(), f"test-metrics-{uuid.uuid4().hex[:8]}", Receiver()
    receiver.start()
    endpoint = WebhookEndpoint.objects.create(url=receiver.url, secret="whsec_metrics_test")
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, event="invoice.paid", payload={},
                                              created_at=datetime.now(UTC))
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue, "-c", "2", "--pool",
               "prefork", "-l", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat",
               "-n", f"{queue}@%h"]
    env = {"DATABASE_URL": database_url_of_tests(), "METRICS_PORT": str(port), "CELERY_TASK_DEFAULT_QUEUE": queue,
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "WEBHOOK_RETRY_BASE_SECONDS": "0.3",
           "WEBHOOK_ALLOW_PRIVATE_URLS": "1"}
    with process(command, env=env, port=port):
        webhook_deliver_task.apply_async(kwargs={"delivery_id": delivery.pk}, queue=queue)

        task = "billing.tasks.webhook_deliver_task"

        def counted():  # the task's own counter moves after it returns, a moment after the delivery's
            text = http_get(f"http://127.0.0.1:{port}/metrics")[1]
            return (value(text, "tokenledger_webhook_attempts_total", outcome="delivered") == 1
                    and value(text, "tokenledger_celery_tasks_total", task=task, outcome="success") == 1 and text)

        text = wait_for(counted, timeout_s=60, what="the worker to deliver the webhook and count the task")
    receiver.server.shutdown()

    assert receiver.answered == [500, 200]
    assert value(text, "tokenledger_webhook_attempts_total", event="invoice.paid", outcome="failed") == 1
    assert value(text, "tokenledger_celery_tasks_total", task=task, outcome="retry") == 1
    assert value(text, "tokenledger_celery_tasks_total", task=task, outcome="success") == 1
    assert value(text, "tokenledger_celery_task_duration_seconds_count", task=task) == 2


def test_a_prefork_worker_with_metrics_but_no_multiprocess_dir_refuses_to_start():
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "unused", "-c", "1", "-l", "warning",
               "--without-gossip", "--without-mingle", "--without-heartbeat"]
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}

    done = subprocess.run(command, cwd=ROOT, env={**env, "METRICS_PORT": str(free_port())}, capture_output=True,
                          text=True, timeout=60)

    assert done.returncode != 0
    assert "METRICS_PORT with the prefork pool needs PROMETHEUS_MULTIPROC_DIR" in done.stderr
