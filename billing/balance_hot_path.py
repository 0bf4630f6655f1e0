"""GET /api/v1/customers/{id}/balance without Django's request cycle: a gateway asks
before every request it serves, so the common answer costs one SQL round trip (the key
and the balance state together) and one Redis round trip (the throttle), not the
middleware, URL resolution, DRF and a second query.

Only the plain case is answered here: a live key whose scope may read that customer, a
spend row already computed, the throttle not exceeded. Anything else (no or malformed
credentials, an unknown key or customer, another customer's balance, a missing spend
row, a throttled key, a database or Redis error) falls through to the DRF view
(billing/spend_apis.py), which answers it exactly as it always has, so the contract has
one definition; tests/spend/test_balance_hot_path.py holds the two to the same answers.
"""

import json
import re
import time

from django.db import DatabaseError
from redis.exceptions import RedisError

from billing.selectors import month_bounds
from billing.selectors.spend import keyed_balance_state
from config.api import api_key_hash, key_rate_allows
from config.metrics.counters import HTTP_REQUESTS, HTTP_SECONDS

PATH = re.compile(r"/api/v1/customers/(?P<customer_id>[-a-zA-Z0-9_]+)/balance/?")
ROUTE = "api/v1/customers/<slug:customer_id>/balance"  # the URL pattern's label, as the middleware counts it
READERS = {"ingest", "admin", "customer"}


def _answer(environ) -> bytes | None:
    """The balance's JSON, or None to let Django answer."""
    from billing.services.spend import balance_view
    from billing.spend_apis import balance_json
    from metering.services import utc_now
    from metering.topics import usage_topic

    match = PATH.fullmatch(environ.get("PATH_INFO", ""))
    scheme, _, raw_key = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if match is None or scheme != "Bearer" or not raw_key.strip():
        return None
    customer_id, key_hash, now = match["customer_id"], api_key_hash(raw_key.strip()), utc_now()
    try:
        found = keyed_balance_state(key_hash=key_hash, customer_id=customer_id, topic=usage_topic(),
                                    period=month_bounds(now)[0])
    except DatabaseError:
        return None
    if found is None:
        return None
    scope, bound, state = found
    if scope not in READERS or (scope == "customer" and bound != customer_id) or state.spend is None:
        return None
    try:
        within = key_rate_allows(bucket="balance", key_hash=key_hash)[0]
    except RedisError:
        return None  # the view meets the same error and answers it
    if not within:
        return None  # over the rate: the view counts it too and answers 429
    return json.dumps(balance_json(balance_view(state, as_of=now))).encode()


def balance_hot_path(app):
    """WSGI middleware: GET balance answered here when it can be, everything else by `app`."""

    def application(environ, start_response):
        if environ.get("REQUEST_METHOD") != "GET" or not environ.get("PATH_INFO", "").endswith(("/balance",
                                                                                                   "/balance/")):
            return app(environ, start_response)
        started = time.perf_counter()
        body = _answer(environ)
        if body is None:
            return app(environ, start_response)
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                  ("Vary", "Accept"), ("X-Content-Type-Options", "nosniff")])
        HTTP_SECONDS.labels(ROUTE).observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(ROUTE, "GET", "200").inc()
        return [body]

    return application
