"""manage.py revoke_api_key: by prefix or whole key; the key is refused from then on."""

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from metering.models import ApiKey
from metering.services import api_key_create

pytestmark = pytest.mark.django_db


def client_with(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@pytest.mark.parametrize("named_by", ["prefix", "whole key"])
def test_a_revoked_key_is_refused(catalog, named_by, capsys):
    key, raw_key = api_key_create(scope="admin", name="ops")
    assert client_with(raw_key).get("/api/v1/customers").status_code == 200

    call_command("revoke_api_key", key.prefix if named_by == "prefix" else raw_key)

    assert client_with(raw_key).get("/api/v1/customers").status_code == 401
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    assert capsys.readouterr().out.startswith(f"revoked {key.prefix}… (admin: ops) at ")


def test_revoking_twice_keeps_the_first_time(db):
    key, _ = api_key_create(scope="ingest")
    call_command("revoke_api_key", key.prefix)
    first = ApiKey.objects.get(pk=key.pk).revoked_at

    call_command("revoke_api_key", key.prefix)

    assert ApiKey.objects.get(pk=key.pk).revoked_at == first


def test_an_unknown_key_is_an_error(db):
    with pytest.raises(CommandError, match="No API key has the prefix 'tl_nothing'"):
        call_command("revoke_api_key", "tl_nothing")
