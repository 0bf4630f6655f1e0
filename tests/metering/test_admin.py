"""Django admin: ledger tables read-only, keys shown once, catalog editable."""

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from metering.consumer.steps import Accepted, Coordinates
from metering.models import ApiKey, DeadLetter, HourlyRollup, UsageEvent
from metering.schemas import Catalog, Rules, event_validate
from metering.services import ledger_append
from tests.conftest import utc
from tests.metering.factories import event

READ_ONLY = [UsageEvent, HourlyRollup, DeadLetter]


@pytest.fixture
def staff_client(client, db):
    user = User.objects.create_superuser("finance", "finance@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def ledger_row(db):
    body = event(timestamp="2026-11-02T10:00:00Z")
    rules = Rules(arrived_at=utc(2026, 11, 2, 10, 1), lateness=utc(2026, 11, 2) - utc(2026, 10, 1))
    valid = event_validate(body, catalog=Catalog(frozenset({"acme"}), frozenset({"gpt-5.4"})), rules=rules)
    ledger_append(accepted=[Accepted(valid, Coordinates("t", 0, 0, -1), utc(2026, 11, 2, 10, 1))])
    return UsageEvent.objects.get(event_id=body["event_id"])


@pytest.mark.django_db
def test_ledger_tables_can_be_viewed_but_not_added_or_changed(staff_client, ledger_row):
    for model in READ_ONLY:
        meta = model._meta
        changelist = staff_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        add = staff_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_add"))

        assert changelist.status_code == 200
        assert add.status_code == 403

    detail = staff_client.get(reverse("admin:metering_usageevent_change", args=[ledger_row.pk]))
    assert detail.status_code == 200 and ledger_row.event_id in detail.content.decode()
    assert b'name="_save"' not in detail.content


@pytest.mark.django_db
def test_a_key_made_in_admin_is_shown_once_and_stored_hashed(staff_client):
    response = staff_client.post(reverse("admin:metering_apikey_add"), {"name": "gateway", "scope": "ingest"},
                                 follow=True)

    shown = next(str(m) for m in response.context["messages"] if "shown once" in str(m))
    raw_key = shown.rsplit(" ", 1)[1]
    stored = ApiKey.objects.get(name="gateway")
    assert raw_key.startswith("tl_") and raw_key.startswith(stored.prefix) and raw_key not in stored.key_hash
    assert staff_client.get("/api/v1/customers", HTTP_AUTHORIZATION=f"Bearer {raw_key}").status_code == 403


@pytest.mark.django_db
def test_a_ledger_entry_shows_the_provider_usage_it_was_read_from(staff_client):
    provider_usage = {"format": "anthropic.messages", "usage": {"input_tokens": 12, "cache_read_input_tokens": 1024,
                                                                "output_tokens": 50}}
    body = event(timestamp="2026-11-02T10:00:00Z", input_tokens=..., cached_input_tokens=..., output_tokens=...,
                 provider_usage=provider_usage)
    rules = Rules(arrived_at=utc(2026, 11, 2, 10, 1), lateness=utc(2026, 11, 2) - utc(2026, 10, 1))
    valid = event_validate(body, catalog=Catalog(frozenset({"acme"}), frozenset({"gpt-5.4"})), rules=rules)
    ledger_append(accepted=[Accepted(valid, Coordinates("t", 0, 1, -1), utc(2026, 11, 2, 10, 1))])
    row = UsageEvent.objects.get(event_id=body["event_id"])

    page = staff_client.get(reverse("admin:metering_usageevent_change", args=[row.pk])).content.decode()

    assert (row.input_tokens, row.cached_input_tokens) == (1036, 1024)
    assert "provider usage (as the gateway sent it)" in page.lower() and "cache_read_input_tokens" in page and "anthropic.messages" in page

