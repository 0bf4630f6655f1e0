"""Gunicorn settings for the web (`gunicorn -c config/gunicorn.py config.wsgi -w N -b ADDR`).

/metrics must count the requests of every worker, so the workers run in Prometheus
multiprocess mode: each writes its values to files in PROMETHEUS_MULTIPROC_DIR and the
worker answering a scrape sums them. The directory is chosen here, before any worker
imports prometheus_client: the one the environment names, else a fresh temporary one
(removed on exit). It is emptied at start, and a worker that exits drops its live
gauges. With LOG_FORMAT=json gunicorn's own error and access lines are JSON too.
"""

import os
import shutil
import tempfile
from pathlib import Path

_made_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _made_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="tokenledger-web-metrics-")
METRICS_DIR = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])

if os.environ.get("LOG_FORMAT") == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "config.log_format.JsonFormatter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
        "loggers": {name: {"handlers": ["console"], "level": "INFO", "propagate": False}
                    for name in ("gunicorn.error", "gunicorn.access")},
    }


def on_starting(server):
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    for path in METRICS_DIR.glob("*.db"):
        path.unlink()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _made_dir:
        shutil.rmtree(METRICS_DIR, ignore_errors=True)
