"""Metrics of the Celery processes: every task counted and timed, and a worker or beat with
METRICS_PORT set serving its own on that port (bound to METRICS_ADDR).

The prefork pool runs tasks in child processes, so a worker serving metrics needs
PROMETHEUS_MULTIPROC_DIR in its environment from its start: the children write their
values there and the parent's server sums them. Without it the parent would serve only
its own zeros, so the worker refuses to start instead. Connected by config/celery.py.
"""

import os
import time

from celery import signals
from django.conf import settings

from config.metrics.counters import CELERY_TASK_SECONDS, CELERY_TASKS
from config.metrics.exposition import metrics_serve, multiprocess_dir, multiprocess_dir_reset

_started_s: dict[str, float] = {}


@signals.celeryd_init.connect
def worker_metrics_serve(conf=None, options=None, **kwargs):
    """In the worker's parent, before the pool forks."""
    if not settings.METRICS_PORT:
        return
    if multiprocess_dir():
        multiprocess_dir_reset(keep_pid=os.getpid())
    elif "prefork" in str(options.get("pool_cls") or conf.worker_pool):
        # SystemExit: Celery logs and ignores any Exception a signal handler raises.
        raise SystemExit("METRICS_PORT with the prefork pool needs PROMETHEUS_MULTIPROC_DIR set to an "
                         "empty directory of its own (docs/operations.md).")
    metrics_serve(port=settings.METRICS_PORT, addr=settings.METRICS_ADDR)


@signals.beat_init.connect
def beat_metrics_serve(**kwargs):
    if settings.METRICS_PORT:
        metrics_serve(port=settings.METRICS_PORT, addr=settings.METRICS_ADDR)


@signals.worker_process_shutdown.connect
def child_gone(**kwargs):
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())


@signals.task_prerun.connect
def task_started(task_id=None, **kwargs):
    _started_s[task_id] = time.monotonic()


@signals.task_postrun.connect
def task_finished(task_id=None, task=None, state=None, **kwargs):
    started = _started_s.pop(task_id, None)
    CELERY_TASKS.labels(task.name, (state or "unknown").lower()).inc()
    if started is not None:
        CELERY_TASK_SECONDS.labels(task.name).observe(time.monotonic() - started)
