"""The OpenAPI schema is what the API answers: schemathesis generates requests for every
operation from /api/schema/ and sends each to a live server with an admin, a customer and an
ingest key, then with the path parameters of real rows (so documents, transitions and
conflicts are reached too); every answer must be a documented status with a documented
content type and body, and none a server error."""

import pytest
import schemathesis
from schemathesis import checks
from schemathesis.specs.openapi import checks as openapi_checks

pytestmark = pytest.mark.django_db(transaction=True)

CHECKS = [checks.not_a_server_error, openapi_checks.status_code_conformance,
          openapi_checks.content_type_conformance, openapi_checks.response_schema_conformance]
CONFIG = schemathesis.Config.from_dict({
    "seed": 8,
    "generation": {"max-examples": 3, "deterministic": True, "no-shrink": True},
    # The coverage phase is unbounded (every boundary of every field): the schema's examples
    # and a few generated cases per operation keep the run to well under a minute.
    "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
})


@pytest.fixture(scope="session")
def api_schema(live_server):
    return schemathesis.openapi.from_url(f"{live_server.url}/api/schema/", config=CONFIG)


@pytest.fixture(autouse=True)
def _server_settings(settings, topics):
    """Throttles out of the way (429 is tested elsewhere); accepted events go to a real broker."""
    settings.API_READ_RATE = settings.USAGE_INGEST_RATE = "1000000/min"


@pytest.fixture(autouse=True)
def _nodeid(request):
    """schemathesis 4.32's from_fixture reads and renames `request.node._nodeid`, which
    pytest 9.2 no longer has; giving it one changes nothing pytest reports."""
    request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_every_answer_is_documented(case, world):
    generated = case.path_parameters or {}
    rows = {"invoice_id": world.issued.pk, "run_id": world.run.pk, "endpoint_id": world.endpoint.pk,
            "customer_id": "acme", "name": "gpt-5.4",  # the customer key is acme's
            "credit_note_id": world.issued.credit_notes.get().pk, "debit_note_id": world.issued.debit_notes.get().pk}
    known = {name: rows[name] for name in generated}
    calls = [("admin", generated), ("ingest", generated), ("customer", known)]
    if known:
        calls.append(("admin", known))
    for scope, path_parameters in calls:
        case.path_parameters = path_parameters
        case.call_and_validate(headers={"Authorization": f"Bearer {world.keys[scope]}"}, checks=CHECKS)
