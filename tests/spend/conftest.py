"""Spend-control fixtures: usage written through the ledger's own append (so the hourly
rollups and the usage segments both hold it), and the balance compared with a rating."""

import json
import threading
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from billing.selectors import month_bounds, period_rate
from metering.consumer.steps import Accepted, Coordinates
from metering.schemas import Rules, event_validate
from metering.selectors import catalog_current
from metering.services import ledger_append
from tests.billing.conftest import fleet, list_prices  # noqa: F401 (fixtures)
from tests.metering.factories import event

_offsets = iter(range(10**9))


def usage(*events: dict, arrived_at: datetime) -> None:
    """Append events (factory bodies with overrides) as the consumer would."""
    rules = Rules(arrived_at=arrived_at, lateness=arrived_at - datetime(2000, 1, 1, tzinfo=arrived_at.tzinfo))
    catalog = catalog_current()
    valid = [event_validate(event(**body), catalog=catalog, rules=rules) for body in events]
    assert all(hasattr(v, "occurred_at") for v in valid), valid
    ledger_append(accepted=[Accepted(v, Coordinates("test", 0, next(_offsets), -1), arrived_at) for v in valid])


def preview_spend(customer_id: str, as_of: datetime) -> Decimal:
    """The upcoming invoice's usage, capacity and discount lines, summed: what spend must equal."""
    start, end = month_bounds(as_of)
    rated = period_rate(customer_ids=[customer_id], start=start, end=end)[customer_id]
    return sum((line.amount for line in rated.lines if line.kind in ("usage", "capacity", "discount")), Decimal(0))


class _Receiver(BaseHTTPRequestHandler):
    """A webhook receiver (the outside world): records every delivery, answers 200."""

    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    """(url, received deliveries) of a real local HTTP server."""
    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks", _Receiver.received
    server.shutdown()

