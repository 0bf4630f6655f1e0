"""Documents over REST honour `Accept` for their own type; errors stay problem+json, and a
document that is not yours is 404 whatever was asked for."""

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


def client_of(world, scope: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {world.keys[scope]}")
    return client


def documents(world) -> list[tuple[str, str, str]]:
    """(path, its content type, a key's scope allowed to read it)"""
    invoice = f"/api/v1/invoices/{world.issued.pk}"
    focus = "/api/v1/exports/focus?start=2026-10-01T00:00:00Z&end=2026-10-02T00:00:00Z"
    return [(f"{invoice}/pdf", "application/pdf", "customer"), (f"{invoice}/csv", "text/csv", "customer"),
            (focus, "text/csv", "admin")]


@pytest.mark.parametrize("accept", ["own", "*/*", None, "application/json;q=0.5, own"])
def test_the_documents_own_type_any_type_or_no_accept_gets_the_document(world, accept):
    for path, media_type, scope in documents(world):
        headers = {} if accept is None else {"HTTP_ACCEPT": accept.replace("own", media_type)}

        response = client_of(world, scope).get(path, **headers)

        assert response.status_code == 200, (path, response.content[:200])
        assert response["Content-Type"].split(";")[0] == media_type
        assert response["Content-Disposition"].startswith("attachment; filename=")
        if media_type == "application/pdf":
            assert b"".join(response.streaming_content if response.streaming else [response.content])[:5] == b"%PDF-"


def test_another_type_is_406_as_a_problem(world):
    for path, _, scope in documents(world):
        response = client_of(world, scope).get(path, HTTP_ACCEPT="application/json")

        assert (response.status_code, response["Content-Type"]) == (406, PROBLEM), path
        assert response.json()["status"] == 406


@pytest.mark.parametrize("accept", ["application/pdf", "text/csv", "application/json", None])
def test_another_customers_document_is_404_whatever_accept_says(world, accept):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    for kind in ("pdf", "csv"):
        response = client_of(world, "customer").get(f"/api/v1/invoices/{world.draft.pk}/{kind}", **headers)

        assert (response.status_code, response["Content-Type"]) == (404, PROBLEM), kind
        assert response.json()["status"] == 404


def test_errors_before_the_lookup_are_problems_even_when_a_pdf_was_asked_for(world):
    path = f"/api/v1/invoices/{world.issued.pk}/pdf"

    no_key = APIClient().get(path, HTTP_ACCEPT="application/pdf")
    wrong_scope = client_of(world, "ingest").get(path, HTTP_ACCEPT="application/pdf")
    bad_range = client_of(world, "admin").get(
        "/api/v1/exports/focus?start=2026-10-02T00:00:00Z&end=2026-10-01T00:00:00Z", HTTP_ACCEPT="text/csv")

    assert [(r.status_code, r["Content-Type"]) for r in (no_key, wrong_scope, bad_range)] == [
        (401, PROBLEM), (403, PROBLEM), (422, PROBLEM)]
    assert bad_range.json()["errors"] == {"end": ["Must be after start."]}
