"""The LiteLLM proxy's pre-call hook of the callback (check_spend=True), against the real
tokenledger: a customer over its hard budget is refused with LiteLLM's own
BudgetExceededError before any model is called. The hook is called as the proxy calls it
(the proxy itself needs its extras, not installed here), with the key's real
UserAPIKeyAuth."""

import asyncio
import os
from decimal import Decimal

import pytest

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore:.*ReadOnly. qualifier:UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:litellm.*"),
]

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before the import: no cost map from GitHub
import litellm  # noqa: E402
from litellm.integrations.custom_logger import CustomLogger  # noqa: E402
from litellm.proxy._types import UserAPIKeyAuth  # noqa: E402

from gateway_client import BalanceCache, UsageClient  # noqa: E402
from gateway_client.litellm_callback import TokenledgerCallback  # noqa: E402
from tests.gateway_client.spend_fixtures import (  # noqa: E402, F401 (fixtures)
    api, budgeted, counted, ingest, list_prices, served, spend,
)


@pytest.fixture
def callback(api, ingest):  # noqa: F811 (fixtures imported above)
    client = UsageClient(rest_url=api, api_key=ingest, flush_interval_s=3600,
                         balances=BalanceCache(rest_url=api, api_key=ingest, ttl_s=0))
    yield TokenledgerCallback(client, check_spend=True)
    client.close()


def pre_call(callback: TokenledgerCallback, *, team_id: str | None, metadata: dict | None = None):
    return asyncio.run(callback.async_pre_call_hook(
        user_api_key_dict=UserAPIKeyAuth(team_id=team_id), cache=None, call_type="completion",
        data={"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}], "metadata": metadata or {}}))


def test_the_proxy_calls_the_hook():
    # the proxy's own test of whether a callback has a pre-call hook (litellm/proxy/utils.py)
    assert "async_pre_call_hook" in vars(TokenledgerCallback)
    assert TokenledgerCallback.async_pre_call_hook is not CustomLogger.async_pre_call_hook


def test_an_allowed_team_passes_and_one_over_its_hard_budget_is_refused(budgeted, callback):  # noqa: F811
    allowed = pre_call(callback, team_id="acme")
    spend(served(), served())  # 12.00 of 10.00

    with pytest.raises(litellm.BudgetExceededError) as refused:
        pre_call(callback, team_id="acme")

    assert allowed is None  # the request goes on unchanged
    assert refused.value.status_code == litellm.budget_exceeded_status_code < 500  # a client error at the proxy
    assert (refused.value.entity_type, refused.value.entity_id) == ("customer", "acme")
    assert "customer acme may not spend" in refused.value.message
    assert Decimal(str(refused.value.current_cost)) == Decimal("12")


def test_the_customer_is_read_from_the_request_metadata_first_and_none_is_let_through(budgeted, callback):  # noqa: F811
    spend(served(), served())
    reader = counted(callback.client.balances)

    with pytest.raises(litellm.BudgetExceededError):
        pre_call(callback, team_id="globex", metadata={"user_api_key_team_id": "acme"})
    unattributed = pre_call(callback, team_id=None)

    assert reader.asked == ["acme"] and unattributed is None


def test_without_check_spend_the_hook_asks_nothing(budgeted, api, ingest):  # noqa: F811
    client = UsageClient(rest_url=api, api_key=ingest, flush_interval_s=3600)
    reader = counted(client.balances)
    spend(served(), served())

    passed = pre_call(TokenledgerCallback(client), team_id="acme")
    client.close()

    assert passed is None and reader.asked == []
