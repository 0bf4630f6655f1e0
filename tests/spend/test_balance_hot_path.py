"""The balance's hot path (billing/balance_hot_path.py) through the project's own WSGI
application, held to the DRF view's answers: the plain case in one SQL query, every
other case handed to the view unchanged."""

import io
import json
from datetime import timedelta

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.test.utils import CaptureQueriesContext

from billing.models import Spend
from config.wsgi import application
from metering.services import api_key_create, api_key_revoke, utc_now
from tests.spend.test_balance_api import spend_some

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _connection_kept():
    """As Django's test client does: a request's end must not close the test's connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def wsgi_get(path: str, authorization: str | None) -> tuple[int, dict, bytes, int]:
    """(status, headers, body, SQL queries) of a GET through config.wsgi.application."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "localhost",
               "SERVER_PORT": "80", "HTTP_HOST": "localhost", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http",
               "wsgi.errors": io.StringIO(), "REMOTE_ADDR": "127.0.0.1"}
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"], answer["headers"] = int(status.split()[0]), dict(headers)

    with CaptureQueriesContext(connection) as queries:
        body = b"".join(application(environ, start_response))
    return answer["status"], answer["headers"], body, len(queries)


def key(scope: str, customer_id: str | None = None) -> str:
    return "Bearer " + api_key_create(scope=scope, customer_id=customer_id)[1]


def same_as_the_view(answer: dict, view: dict) -> None:
    """Equal but for the watermark's age, which moves between the two reads."""
    assert {k: v for k, v in answer.items() if k != "lag_ms"} == {k: v for k, v in view.items() if k != "lag_ms"}


@pytest.mark.parametrize("scope, customer", [("customer", "acme"), ("ingest", None), ("admin", None)])
def test_the_plain_case_is_one_query_and_the_views_answer(list_prices, api_client_for, scope, customer):
    spend_some()
    spend_some("globex")
    view = api_client_for("ingest").get("/api/v1/customers/acme/balance").json()  # computes the row

    status, headers, body, queries = wsgi_get("/api/v1/customers/acme/balance", key(scope, customer))

    assert (status, headers["Content-Type"], queries) == (200, "application/json", 1)
    same_as_the_view(json.loads(body), view)


@pytest.mark.parametrize("path, authorization, status", [
    ("/api/v1/customers/globex/balance", "customer:acme", 404),  # another customer's
    ("/api/v1/customers/nobody/balance", "ingest", 404),
    ("/api/v1/customers/acme/balance", None, 401),
    ("/api/v1/customers/acme/balance", "Bearer tl_not-a-key", 401),
    ("/api/v1/customers/acme/balance", "Basic YWNtZTpzZWNyZXQ=", 401),
])
def test_everything_else_is_the_views_problem_answer(list_prices, path, authorization, status):
    spend_some()
    spend_some("globex")
    if authorization in ("ingest", "customer:acme"):
        authorization = key(*authorization.split(":")) if ":" in authorization else key(authorization)

    got, headers, body, _ = wsgi_get(path, authorization)

    assert (got, headers["Content-Type"]) == (status, "application/problem+json")
    assert json.loads(body)["status"] == status


def test_a_revoked_key_is_refused_from_the_next_request_on(list_prices):
    spend_some()
    raw = api_key_create(scope="ingest")[1]
    assert wsgi_get("/api/v1/customers/acme/balance", f"Bearer {raw}")[0] == 200

    api_key_revoke(key=raw, as_of=utc_now())

    assert wsgi_get("/api/v1/customers/acme/balance", f"Bearer {raw}")[0] == 401


def test_a_missing_spend_row_is_computed_by_the_view(list_prices):
    spend_some()
    Spend.objects.all().delete()

    status, _, body, queries = wsgi_get("/api/v1/customers/acme/balance", key("ingest"))

    assert (status, json.loads(body)["spend"]) == (200, "4.00") and queries > 1
    assert wsgi_get("/api/v1/customers/acme/balance", key("ingest"))[3] == 1  # kept: the next one is plain


def test_a_throttled_key_gets_the_views_429(list_prices, settings):
    settings.BALANCE_READ_RATE = "2/min"
    spend_some()
    gateway = key("ingest")
    wsgi_get("/api/v1/customers/acme/balance", gateway)  # computes the row

    answers = [wsgi_get("/api/v1/customers/acme/balance", gateway) for _ in range(2)]

    assert [a[0] for a in answers] == [200, 429]
    assert 0 < int(answers[1][1]["Retry-After"]) <= timedelta(minutes=1).total_seconds() + 1  # rounded up
