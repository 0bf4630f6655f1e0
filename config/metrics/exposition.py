"""Which registry holds this process's metrics, and a port to serve them on.

A process tree that forks workers (gunicorn, the Celery prefork pool) runs in
prometheus_client's multiprocess mode: PROMETHEUS_MULTIPROC_DIR names a directory where
every process writes its values, set before the first metric is made, and whoever
serves /metrics sums the files. The consumer and beat are one process each and keep
their values in memory.
"""

import os
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def process_registry() -> CollectorRegistry:
    """This process's metrics, or in multiprocess mode those of every process of its tree,
    live and exited (an exited worker's counts still belong to the totals)."""
    if not multiprocess_dir():
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def multiprocess_dir_reset(*, keep_pid: int | None = None) -> None:
    """Forget a previous run's files (a restarted container keeps its /tmp): the values of
    processes that are gone would be added to this run's."""
    for path in Path(multiprocess_dir()).glob("*.db"):
        if keep_pid is None or path.stem.rsplit("_", 1)[-1] != str(keep_pid):
            path.unlink(missing_ok=True)


def metrics_serve(*, port: int, addr: str) -> None:
    """Serve this process's metrics over HTTP from a daemon thread (every path answers)."""
    start_http_server(port, addr=addr, registry=process_registry())
