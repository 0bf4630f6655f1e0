"""A LiteLLM proxy callback that records each successful call with a UsageClient.

    # litellm proxy: custom_callbacks.py, referenced as `callbacks: custom_callbacks.tokenledger`
    from gateway_client import UsageClient
    from gateway_client.litellm_callback import TokenledgerCallback
    tokenledger = TokenledgerCallback(UsageClient(bootstrap_servers=..., rest_url=..., api_key=...))

What it reads, in LiteLLM's documented callback arguments (`kwargs` and `response_obj`
of CustomLogger.log_success_event / async_log_success_event):
- `kwargs["standard_logging_object"]` (StandardLoggingPayload): `litellm_call_id` (the
  event_id, so LiteLLM logging one call twice is one event; `id`, which LiteLLM fills
  with the provider's response id when there is one, only when it is absent: providers'
  ids are not unique enough for a ledger key, and a cache hit's is made up),
  `model_group` (the name the caller asked for, set by the Router and so the proxy;
  `model` when empty), `custom_llm_provider`, `endTime`, `cache_hit`, and
  `metadata`, where the customer id is looked up (`customer_id_keys`, first present
  wins: default the key's team, `user_api_key_team_id`; `end_user` is also looked up at
  the payload's top level and `requester_metadata`).
- The usage: the provider's own object when LiteLLM kept the raw response
  (`kwargs["original_response"]`: `usage`, or Gemini's `usageMetadata`), sent under
  the provider's format; otherwise LiteLLM's normalized usage
  (`metadata.usage_object`, `hidden_params.usage_object` or `response_obj.usage`),
  which is OpenAI chat-shaped whatever the provider, and is sent as `openai.chat`
  (for Anthropic, rebuilt in Anthropic's shape first: LiteLLM folds cache writes into
  prompt_tokens, which OpenAI's adapter would price as plain input). LiteLLM's own
  `cost`, which it adds to a streamed call's usage, is left out: it is not a count.
  This is the path of streamed calls (LiteLLM then passes its stream wrapper as
  `original_response`) and of `mock_response`.
  The format follows the object's shape, the provider only breaking ties, so an
  OpenAI-shaped object is never read as Anthropic's (whose input_tokens exclude
  cache reads).

With `check_spend=True` the proxy's pre-call hook (CustomLogger.async_pre_call_hook) asks
`client.check_spend()` first, the customer looked up with the same `customer_id_keys` in
the request's metadata (the proxy has put the key's `user_api_key_*` there) or on the
key itself (`user_api_key_team_id` → its `team_id`), and answers a customer tokenledger
says may not spend with LiteLLM's BudgetExceededError (the proxy's budget answer, status
`litellm.budget_exceeded_status_code`). A request with no customer id is let through
(it is logged as unattributed after the call); the other BalanceErrors propagate. The
SDK (`litellm.completion`) has no pre-call hook: call `client.check_spend()` before it.

No import of litellm is needed: when it is importable the class subclasses its
CustomLogger, otherwise it is a plain class with the same method names.
"""

import asyncio
import json
import logging
from datetime import UTC, datetime

from gateway_client.balance import SpendRefused
from gateway_client.client import UsageClient

try:  # the proxy has litellm; tests and other gateways need not
    from litellm.integrations.custom_logger import CustomLogger as _Base
except ImportError:  # pragma: no cover - depends on the environment
    _Base = object

logger = logging.getLogger(__name__)

ANTHROPIC_PROVIDERS = frozenset({"anthropic", "anthropic_text"})
OPENAI_PROVIDERS = frozenset({"openai", "azure", "text-completion-openai", "azure_text"})
# The providers' names for a service tier → the catalog's (DESIGN.md §1).
SERVICE_TIERS = {"default": "standard", "auto": "standard", "standard": "standard", "standard_only": "standard",
                 "flex": "flex", "priority": "priority", "batch": "batch"}


def anthropic_served(provider: str | None, model: str | None) -> bool:
    """Claude, from Anthropic itself or through a cloud that resells it (Vertex AI, Bedrock):
    LiteLLM names the cloud as the provider, the model says Claude."""
    return provider in ANTHROPIC_PROVIDERS or "claude" in (model or "").lower()


def usage_format(usage: dict, provider: str | None, model: str | None = None) -> str | None:
    """Which adapter reads `usage`, from its shape first, then the provider and model."""
    if "promptTokenCount" in usage or "candidatesTokenCount" in usage:
        return "gemini"
    if "prompt_tokens" in usage:
        return "openai.chat"
    if "input_tokens" in usage:
        anthropic = ("cache_read_input_tokens" in usage or "cache_creation_input_tokens" in usage
                     or anthropic_served(provider, model))
        return "anthropic.messages" if anthropic and "input_tokens_details" not in usage else "openai.responses"
    return None


def _as_dict(value) -> dict | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None
    for method in ("model_dump", "dict", "to_dict"):  # pydantic objects (litellm.Usage, ModelResponse)
        if callable(getattr(value, method, None)):
            try:
                dumped = getattr(value, method)()
            except Exception:  # noqa: BLE001 -- try the next spelling
                continue
            if isinstance(dumped, dict):
                return dumped
    return None


class TokenledgerCallback(_Base):
    def __init__(self, client: UsageClient, *, customer_id_keys: tuple[str, ...] = ("user_api_key_team_id",),
                 service_tier: str = "standard", region: str | None = None, cluster: str | None = None,
                 record_cache_hits: bool = False, model_names: dict[str, str] | None = None,
                 check_spend: bool = False):
        if _Base is not object:
            super().__init__()
        self.client = client
        self.customer_id_keys = customer_id_keys
        self.service_tier, self.region, self.cluster = service_tier, region, cluster
        self.record_cache_hits = record_cache_hits
        self.model_names = model_names or {}
        self.check_spend = check_spend
        if check_spend and client.balances is None:
            raise ValueError("check_spend needs a UsageClient with rest_url and api_key, or balances=")
        self.unattributed = 0  # successful calls with no customer id: logged, not recorded

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self.record(kwargs, response_obj, end_time=end_time)

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        if self.client.block_timeout_s > 0:  # record() may wait for buffer room: not on the event loop
            await asyncio.to_thread(self.record, kwargs, response_obj, end_time=end_time)
        else:
            self.record(kwargs, response_obj, end_time=end_time)

    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        if not self.check_spend:
            return None
        customer_id = self._request_customer_id(user_api_key_dict, data)
        if customer_id:
            try:  # a cached balance answers at once; a fetch blocks on HTTP: not on the event loop
                await asyncio.to_thread(self.client.check_spend, customer_id)
            except SpendRefused as refused:
                raise _budget_exceeded(refused) from refused
        return None

    def _request_customer_id(self, user_api_key_dict, data: dict) -> str | None:
        sources = [data.get("metadata") or {}, data.get("litellm_metadata") or {}]
        for key in self.customer_id_keys:
            for source in sources:
                value = source.get(key) if isinstance(source, dict) else None
                if isinstance(value, str) and value:
                    return value
            value = getattr(user_api_key_dict, key.removeprefix("user_api_key_"), None)
            if isinstance(value, str) and value:
                return value
        return None

    def record(self, kwargs: dict, response_obj, *, end_time=None) -> str | None:
        """Record the call; returns the event_id, or None when there is nothing to bill."""
        payload = kwargs.get("standard_logging_object") or {}
        metadata = payload.get("metadata") or {}
        if payload.get("cache_hit") and not self.record_cache_hits:
            return None  # LiteLLM's own cache answered: no model served it
        call_id = payload.get("litellm_call_id") or kwargs.get("litellm_call_id") or payload.get("id")
        customer_id = self._customer_id(payload, metadata, kwargs)
        if not customer_id:
            self.unattributed += 1
            logger.error("LiteLLM call %s has no customer id under %s; not recorded (%d so far)",
                         call_id, ", ".join(self.customer_id_keys), self.unattributed)
            return None
        provider = payload.get("custom_llm_provider") or (kwargs.get("litellm_params") or {}).get("custom_llm_provider")
        model = payload.get("model_group") or payload.get("model") or kwargs.get("model")
        provider_usage, source, tier = self._provider_usage(kwargs, payload, metadata, response_obj, provider, model)
        response_id = payload.get("id") if payload.get("id") != call_id else None
        event_metadata = {"litellm_call_id": call_id, "response_id": response_id, "provider": provider,
                          "deployment_model": payload.get("model"), "usage_source": source}
        common = dict(
            customer_id=customer_id, model=self.model_names.get(model, model), event_id=call_id,
            timestamp=self._served_at(payload, end_time), service_tier=tier or self.service_tier,
            region=self.region, cluster=self.cluster,
            metadata={k: v for k, v in event_metadata.items() if v is not None} or None,
        )
        if provider_usage is not None:
            return self.client.record(provider_usage=provider_usage, **common)
        # No usage object at all: the payload's own counts are all there is.
        return self.client.record(input_tokens=int(payload.get("prompt_tokens") or 0),
                                  output_tokens=int(payload.get("completion_tokens") or 0), **common)

    def _customer_id(self, payload: dict, metadata: dict, kwargs: dict) -> str | None:
        requester = metadata.get("requester_metadata") or {}
        litellm_metadata = (kwargs.get("litellm_params") or {}).get("metadata") or {}
        for key in self.customer_id_keys:
            for source in (metadata, payload, requester, litellm_metadata):
                value = source.get(key)
                if isinstance(value, str) and value:
                    return value
        return None

    def _provider_usage(self, kwargs, payload, metadata, response_obj, provider, model) -> tuple:
        """(provider_usage, where it came from: "provider" or "litellm", the service tier
        the response reported), or Nones."""
        raw = _as_dict(kwargs.get("original_response"))
        if raw:
            usage = raw.get("usageMetadata") or raw.get("usage")  # Gemini's, or anyone else's: the shape decides
            usage = usage if isinstance(usage, dict) else None
            if usage and (fmt := usage_format(usage, provider, model)):
                tier = raw.get("service_tier") or usage.get("service_tier")
                return {"format": fmt, "usage": usage}, "provider", _tier(tier)
        response = _as_dict(response_obj) or {}
        for candidate in (metadata.get("usage_object"), (payload.get("hidden_params") or {}).get("usage_object"),
                          response.get("usage"), getattr(response_obj, "usage", None)):
            usage = _as_dict(candidate)
            if usage and (fmt := usage_format(usage, provider, model)):
                usage = {k: v for k, v in _plain(usage).items() if k != "cost"}  # LiteLLM's price, not a count
                tier = _tier(response.get("service_tier")) or _tier(usage.get("service_tier"))
                if fmt == "openai.chat" and anthropic_served(provider, model):
                    # LiteLLM folds Anthropic's cache reads and writes into prompt_tokens; read
                    # as OpenAI's, the writes would be priced as plain input.
                    fmt, usage = "anthropic.messages", _anthropic_of_litellm(usage)
                return {"format": fmt, "usage": usage}, "litellm", tier
        return None, None, None

    @staticmethod
    def _served_at(payload: dict, end_time) -> datetime:
        if isinstance(payload.get("endTime"), int | float):
            return datetime.fromtimestamp(payload["endTime"], UTC)
        if isinstance(end_time, datetime):  # LiteLLM passes naive local time
            return end_time.astimezone(UTC)
        return datetime.now(UTC)


def _budget_exceeded(refused: SpendRefused) -> Exception:
    """LiteLLM's own budget refusal, which the proxy answers as a client error; the
    refusal itself where litellm is not installed."""
    try:
        from litellm.exceptions import BudgetExceededError
    except ImportError:  # pragma: no cover - depends on the environment
        return refused
    balance = refused.balance
    # LiteLLM's exception takes floats; they are only shown in its message, the money stays Decimal here
    return BudgetExceededError(current_cost=float(balance.spend), max_budget=float(balance.budget or 0),
                               message=str(refused), entity_type="customer", entity_id=balance.customer_id)


def _plain(usage: dict) -> dict:
    """LiteLLM's usage without the Nones its pydantic models fill in for absent fields."""
    return {k: (_plain(v) if isinstance(v, dict) else v) for k, v in usage.items() if v is not None}


def _tier(value) -> str | None:
    return SERVICE_TIERS.get(value) if isinstance(value, str) else None


def _anthropic_of_litellm(usage: dict) -> dict:
    """Anthropic's own usage shape from LiteLLM's normalized one (prompt_tokens = input +
    cache reads + cache writes), for a response whose raw object LiteLLM did not keep."""
    details = usage.get("prompt_tokens_details") or {}
    read = usage.get("cache_read_input_tokens") or details.get("cached_tokens") or 0
    write = (usage.get("cache_creation_input_tokens") or details.get("cache_creation_tokens")
             or details.get("cache_write_tokens") or 0)
    rebuilt = {"input_tokens": (usage.get("prompt_tokens") or 0) - read - write,
               "output_tokens": usage.get("completion_tokens") or 0,
               "cache_read_input_tokens": read, "cache_creation_input_tokens": write}
    lifetimes = details.get("cache_creation_token_details")
    if isinstance(lifetimes, dict):
        rebuilt["cache_creation"] = {name: lifetimes.get(name) or 0
                                     for name in ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")}
    return rebuilt
