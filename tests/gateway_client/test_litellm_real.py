"""The LiteLLM callback driven by the real `litellm` package, offline: `mock_response`
calls, and calls to a local stand-in of each provider's HTTP API, so LiteLLM's own
provider transformations, logging payload and callback dispatch (sync and async,
streamed and not, direct and through the Router the proxy uses) produce what the
callback reads. Nothing leaves the machine: LiteLLM reads its bundled cost map
(LITELLM_LOCAL_MODEL_COST_MAP) and its bundled tokenizer files."""

import asyncio
import json
import os
import time
from datetime import datetime

import pytest

pytestmark = [  # litellm's own, at import and per call
    pytest.mark.filterwarnings("ignore:.*ReadOnly. qualifier:UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:litellm.*"),
]

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before the import: no cost map from GitHub
import litellm  # noqa: E402
from litellm import ModelResponse, Usage  # noqa: E402
from litellm.integrations.custom_logger import CustomLogger  # noqa: E402

from gateway_client import UsageClient  # noqa: E402
from gateway_client.litellm_callback import TokenledgerCallback  # noqa: E402
from metering.models import UsageEvent  # noqa: E402
from metering.provider_usage import token_fields  # noqa: E402
from tests.gateway_client.conftest import accept_all  # noqa: E402
from tests.gateway_client.http_stub import QuietHandler, serve  # noqa: E402

MESSAGES = [{"role": "user", "content": "hello"}]
def team() -> dict:
    """What the proxy puts in metadata for a key of team acme (a fresh dict: LiteLLM writes into it)."""
    return {"user_api_key_team_id": "acme"}

OPENAI_USAGE = {"prompt_tokens": 1830, "completion_tokens": 412, "total_tokens": 2242,
                "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 128, "audio_tokens": 0}}
ANTHROPIC_USAGE = {"input_tokens": 12, "cache_read_input_tokens": 1024, "cache_creation_input_tokens": 300,
                   "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 100},
                   "output_tokens": 50, "service_tier": "priority"}
GEMINI_USAGE = {"promptTokenCount": 900, "cachedContentTokenCount": 512, "candidatesTokenCount": 40,
                "thoughtsTokenCount": 60, "totalTokenCount": 1000}


def openai_body() -> dict:
    return {"id": "chatcmpl-prov-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
            "service_tier": "default", "usage": OPENAI_USAGE,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}


def anthropic_body() -> dict:
    return {"id": "msg_prov_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "usage": ANTHROPIC_USAGE}


def gemini_body() -> dict:
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]}, "finishReason": "STOP"}],
            "modelVersion": "gemini-2.5-flash", "responseId": "gem-prov-1", "usageMetadata": GEMINI_USAGE}


def openai_stream() -> list[dict]:
    chunk = {"id": "chatcmpl-prov-s", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
    return [{**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": None}]},
            {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**chunk, "choices": [], "usage": OPENAI_USAGE}]  # include_usage's last chunk


def anthropic_stream() -> list[dict]:
    start_usage = {k: v for k, v in ANTHROPIC_USAGE.items() if k != "output_tokens"} | {"output_tokens": 1}
    return [
        {"type": "message_start", "message": {**anthropic_body(), "content": [], "stop_reason": None,
                                              "usage": start_usage}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 50}},
        {"type": "message_stop"},
    ]


class FakeProviders:
    """OpenAI's /v1/chat/completions, Anthropic's /v1/messages and Gemini's
    :generateContent on one local port, answering canned bodies (SSE when asked to stream)."""

    def __init__(self):
        self.paths: list[str] = []
        fake = self

        class Handler(QuietHandler):
            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                fake.paths.append(self.path.split("?")[0])
                if self.path.startswith("/v1/messages"):
                    body, events, named = anthropic_body(), anthropic_stream(), True
                elif ":generateContent" in self.path:
                    body, events, named = gemini_body(), None, False
                else:
                    body, events, named = openai_body(), openai_stream(), False
                if request.get("stream"):
                    raw = b"".join((f"event: {e['type']}\n".encode() if named else b"")
                                   + b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
                    raw += b"" if named else b"data: [DONE]\n\n"
                    content_type = "text/event-stream"
                else:
                    raw, content_type = json.dumps(body).encode(), "application/json"
                self.reply(200, raw, {"Content-Type": content_type})

        self.server, self.url = serve(Handler)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def providers():
    fake = FakeProviders()
    yield fake
    fake.close()


def registered(callback: TokenledgerCallback):
    """Register the callback the way a proxy config does; undone at teardown."""
    assert isinstance(callback, CustomLogger)  # the real base class, litellm being importable
    litellm.callbacks = [callback]
    return callback


@pytest.fixture
def litellm_state():
    """LiteLLM's globals (callbacks, cache) as they were, after the test."""
    cache = litellm.cache
    yield
    for callback in list(litellm.callbacks):
        litellm.logging_callback_manager.remove_callback_from_all_lists(callback)
    litellm.callbacks = []
    litellm.cache = cache


@pytest.fixture
def callback(stub_api, litellm_state):
    stub_api.default = (202, {}, accept_all)
    client = UsageClient(rest_url=stub_api.url, api_key="k", flush_interval_s=3600)
    yield registered(TokenledgerCallback(client, region="us-east", cluster="iad-h100-a"))
    client.close(timeout_s=1)


def recorded(callback, count: int, timeout_s: float = 10) -> None:
    """Wait until LiteLLM's logging (a worker thread for sync calls) has recorded `count`."""
    deadline = time.monotonic() + timeout_s
    while callback.client.stats.recorded < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert callback.client.stats.recorded == count


async def recorded_async(callback, count: int, timeout_s: float = 10) -> None:
    """The same inside the event loop, where LiteLLM's async logging runs as a task."""
    deadline = time.monotonic() + timeout_s
    while callback.client.stats.recorded < count and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert callback.client.stats.recorded == count


def posted(callback, stub_api, started: float) -> list[dict]:
    """The events the client posted, in call order, each timestamp checked to be LiteLLM's
    endTime of a call made since `started` and then dropped (it is the clock's)."""
    assert callback.client.flush(timeout_s=10)
    events = sorted(stub_api.events_posted(), key=lambda e: e["timestamp"])
    for event in events:
        served = datetime.fromisoformat(event.pop("timestamp").replace("Z", "+00:00"))
        assert served.tzinfo is not None and started - 1 <= served.timestamp() <= time.time() + 1
    return events


def event(call_id: str, model: str, provider: str, usage: dict, *, source: str, response_id: str | None = None,
          deployment: str | None = None, tier: str = "standard") -> dict:
    metadata = {"litellm_call_id": call_id, "provider": provider, "deployment_model": deployment or model,
                "usage_source": source}
    if response_id is not None:
        metadata["response_id"] = response_id
    return {"event_id": call_id, "customer_id": "acme", "model": model, "provider_usage": usage,
            "service_tier": tier, "region": "us-east", "cluster": "iad-h100-a", "metadata": metadata}


def mocked(response_id: str, model: str, usage: Usage) -> ModelResponse:
    return ModelResponse(id=response_id, model=model, usage=usage, choices=[
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}])


def test_mock_responses_of_three_providers_are_recorded_from_litellms_own_payload(callback, stub_api):
    started = time.time()
    for n, model in enumerate(("gpt-4o", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash")):
        litellm.completion(model=model, messages=MESSAGES, mock_response="hi", metadata=team(),
                           litellm_call_id=f"call-mock-{n}")
        recorded(callback, n + 1)  # one at a time, so the timestamps keep the call order

    events = posted(callback, stub_api, started)
    # A mock's usage is LiteLLM's fixed 10 prompt / 20 completion tokens; its response id is made up.
    response_ids = [e["metadata"].pop("response_id") for e in events]
    assert all(rid.startswith("chatcmpl-") for rid in response_ids)
    assert events == [
        event("call-mock-0", "gpt-4o", "openai", {"format": "openai.chat", "usage": {
            "prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}}, source="litellm"),
        event("call-mock-1", "claude-sonnet-4-5", "anthropic", {"format": "anthropic.messages", "usage": {
            "input_tokens": 10, "output_tokens": 20, "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0}}, source="litellm"),
        event("call-mock-2", "gemini-2.5-flash", "gemini", {"format": "openai.chat", "usage": {
            "prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}}, source="litellm"),
    ]


def test_mock_usage_objects_carry_cache_tokens_through_acompletion(callback, stub_api):
    openai_mock = mocked("chatcmpl-mock-o", "gpt-4o", Usage(
        prompt_tokens=1830, completion_tokens=412, total_tokens=2242,
        prompt_tokens_details={"cached_tokens": 1024}, completion_tokens_details={"reasoning_tokens": 128}))
    anthropic_mock = mocked("msg_mock_a", "claude-sonnet-4-5", Usage(  # as LiteLLM normalizes Anthropic's
        prompt_tokens=1336, completion_tokens=50, total_tokens=1386, service_tier="priority",
        cache_read_input_tokens=1024, cache_creation_input_tokens=300,
        prompt_tokens_details={"cached_tokens": 1024, "cache_creation_tokens": 300, "cache_creation_token_details": {
            "ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 100}}))
    started = time.time()

    async def calls():
        await litellm.acompletion(model="gpt-4o", messages=MESSAGES, mock_response=openai_mock, metadata=team(),
                                  litellm_call_id="call-async-o")
        await recorded_async(callback, 1)
        await litellm.acompletion(model="anthropic/claude-sonnet-4-5", messages=MESSAGES, metadata=team(),
                                  mock_response=anthropic_mock, litellm_call_id="call-async-a")
        await recorded_async(callback, 2)

    asyncio.run(calls())

    assert posted(callback, stub_api, started) == [
        event("call-async-o", "gpt-4o", "openai", {"format": "openai.chat", "usage": {
            "prompt_tokens": 1830, "completion_tokens": 412, "total_tokens": 2242,
            "prompt_tokens_details": {"cached_tokens": 1024}, "completion_tokens_details": {"reasoning_tokens": 128}}},
            source="litellm", response_id="chatcmpl-mock-o"),
        event("call-async-a", "claude-sonnet-4-5", "anthropic", {"format": "anthropic.messages", "usage": {
            "input_tokens": 12, "output_tokens": 50, "cache_read_input_tokens": 1024,
            "cache_creation_input_tokens": 300,
            "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 100}}},
            source="litellm", response_id="msg_mock_a", tier="priority"),
    ]


def router_for(providers: FakeProviders) -> "litellm.Router":
    """A Router as the proxy builds one from its model_list: the caller's model names are
    the model groups, each a deployment at the local fake provider."""
    deployments = {"gpt-5.4": ("openai/gpt-4o", f"{providers.url}/v1"),
                   "claude": ("anthropic/claude-sonnet-4-5", providers.url),
                   "flash": ("gemini/gemini-2.5-flash", providers.url)}
    return litellm.Router(model_list=[
        {"model_name": name, "litellm_params": {"model": model, "api_base": base, "api_key": "sk-local"}}
        for name, (model, base) in deployments.items()])


def test_provider_calls_through_the_router_are_recorded_with_the_providers_raw_usage(callback, stub_api, providers):
    router = router_for(providers)
    started = time.time()

    async def calls():
        for n, group in enumerate(("gpt-5.4", "claude", "flash")):
            await router.acompletion(model=group, messages=MESSAGES, metadata=team(), litellm_call_id=f"call-r-{n}")
            await recorded_async(callback, n + 1)

    asyncio.run(calls())

    assert providers.paths == ["/v1/chat/completions", "/v1/messages", "/models/gemini-2.5-flash:generateContent"]
    events = posted(callback, stub_api, started)
    # LiteLLM's payload `id` for Anthropic is its own, not the provider's msg_ id.
    assert events[1]["metadata"].pop("response_id").startswith("chatcmpl-")
    assert events == [
        event("call-r-0", "gpt-5.4", "openai", {"format": "openai.chat", "usage": OPENAI_USAGE},
              source="provider", response_id="chatcmpl-prov-1", deployment="openai/gpt-4o"),
        event("call-r-1", "claude", "anthropic", {"format": "anthropic.messages", "usage": ANTHROPIC_USAGE},
              source="provider", deployment="anthropic/claude-sonnet-4-5", tier="priority"),
        event("call-r-2", "flash", "gemini", {"format": "gemini", "usage": GEMINI_USAGE},
              source="provider", response_id="gem-prov-1", deployment="gemini/gemini-2.5-flash"),
    ]


def test_streamed_calls_are_recorded_from_litellms_usage_without_its_cost(callback, stub_api, providers):
    started = time.time()
    stream = litellm.completion(model="openai/gpt-4o", messages=MESSAGES, api_base=f"{providers.url}/v1",
                                api_key="sk-local", stream=True, stream_options={"include_usage": True},
                                metadata=team(), litellm_call_id="call-s-o")
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == "hi"
    recorded(callback, 1)

    async def anthropic_streamed():
        response = await litellm.acompletion(model="anthropic/claude-sonnet-4-5", messages=MESSAGES, stream=True,
                                             api_base=providers.url, api_key="sk-local", metadata=team(),
                                             litellm_call_id="call-s-a")
        async for _ in response:
            pass
        await recorded_async(callback, 2)

    asyncio.run(anthropic_streamed())

    events = posted(callback, stub_api, started)
    assert events[1]["metadata"].pop("response_id").startswith("chatcmpl-")
    assert events == [
        event("call-s-o", "gpt-4o", "openai", {"format": "openai.chat", "usage": OPENAI_USAGE},
              source="litellm", response_id="chatcmpl-prov-s"),
        # Rebuilt in Anthropic's shape from LiteLLM's (prompt_tokens 1336 = 12 + 1024 + 300),
        # the 5 min / 1 h split kept. LiteLLM drops message_start's service_tier of a stream
        # (it is nowhere in what the callback gets), so the callback's own tier stands.
        event("call-s-a", "claude-sonnet-4-5", "anthropic", {"format": "anthropic.messages", "usage": {
            "input_tokens": 12, "output_tokens": 50, "cache_read_input_tokens": 1024,
            "cache_creation_input_tokens": 300,
            "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 100}}},
            source="litellm"),
    ]


@pytest.mark.django_db(transaction=True)
def test_an_anthropic_call_with_cache_writes_reaches_the_ledger_over_kafka(
        catalog, topics, drain, kafka_bootstrap, providers, litellm_state):
    client = UsageClient(bootstrap_servers=kafka_bootstrap, topic=topics["usage"])
    registered(TokenledgerCallback(client, model_names={"claude": "gpt-5.4"}))  # a catalog model of the tests
    router = router_for(providers)

    async def call():
        await router.acompletion(model="claude", messages=MESSAGES, metadata=team(), litellm_call_id="call-k-1")
        deadline = time.monotonic() + 10
        while client.stats.recorded < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    asyncio.run(call())
    client.close(timeout_s=10)
    drain()

    stored = UsageEvent.objects.get(event_id="call-k-1")
    assert (stored.customer_id, stored.model, client.stats.sent_kafka) == ("acme", "gpt-5.4", 1)
    assert stored.provider_usage == {"format": "anthropic.messages", "usage": ANTHROPIC_USAGE}
    expected = token_fields(stored.provider_usage)
    assert {name: getattr(stored, name) for name in expected} == expected
    assert (stored.input_tokens, stored.cached_input_tokens, stored.cache_write_tokens,
            stored.cache_write_long_tokens, stored.output_tokens) == (1336, 1024, 200, 100, 50)
