"""Integrations register webhook endpoints over REST; the secret is never read back."""

from datetime import UTC, datetime

import pytest

from billing.models import WebhookDelivery, WebhookEndpoint
from billing.services.webhooks import webhook_event_publish

pytestmark = pytest.mark.django_db


def test_register_list_deactivate_and_read_deliveries(api_client_for):
    admin = api_client_for("admin")

    created = admin.post("/api/v1/webhook-endpoints", {"url": "https://erp.example/hooks", "secret": "s" * 24,
                                                        "events": ["invoice.finalized", "credit_note.issued"]},
                         format="json")
    endpoint_id = created.json()["id"]
    webhook_event_publish(event="invoice.finalized", payload={"number": "INV-2026-000001"},
                          at=datetime(2026, 11, 2, tzinfo=UTC))
    webhook_event_publish(event="invoice.paid", payload={"number": "INV-2026-000001"})
    listed = admin.get("/api/v1/webhook-endpoints").json()["results"]
    deliveries = admin.get(f"/api/v1/webhook-endpoints/{endpoint_id}/deliveries").json()["results"]
    stopped = admin.patch(f"/api/v1/webhook-endpoints/{endpoint_id}", {"active": False}, format="json")

    assert created.status_code == 201 and "secret" not in created.json()
    assert WebhookEndpoint.objects.get(pk=endpoint_id).secret == "s" * 24
    assert [e["url"] for e in listed] == ["https://erp.example/hooks"] and "secret" not in listed[0]
    assert [d["event"] for d in deliveries] == ["invoice.finalized"]
    assert stopped.json()["active"] is False
    assert webhook_event_publish(event="invoice.finalized", payload={}) == []
    assert WebhookDelivery.objects.count() == 1


@pytest.mark.parametrize(("body", "field"), [
    ({"url": "not a url", "secret": "s" * 24}, "url"),
    ({"url": "https://erp.example/hooks", "secret": "short"}, "secret"),
    ({"url": "https://erp.example/hooks", "secret": "s" * 24, "events": ["invoice.eaten"]}, "events[0]"),
])
def test_bad_registrations_are_field_errors(api_client_for, body, field):
    response = api_client_for("admin").post("/api/v1/webhook-endpoints", body, format="json")

    assert response.status_code == 422 and list(response.json()["errors"]) == [field]


def test_only_admin_keys_manage_endpoints(catalog, api_client_for):
    assert api_client_for("customer", "acme").get("/api/v1/webhook-endpoints").status_code == 403
    assert api_client_for("ingest").post("/api/v1/webhook-endpoints", {}, format="json").status_code == 403
