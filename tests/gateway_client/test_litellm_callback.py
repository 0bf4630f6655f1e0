"""The LiteLLM callback, fed what LiteLLM passes a CustomLogger: `kwargs` carrying the
StandardLoggingPayload (`standard_logging_object`) and the raw provider response
(`original_response`), and `response_obj`. The payloads are written by hand in the
documented shape. When litellm is installed the callback subclasses its CustomLogger, and
the import of litellm is told to read its bundled cost map rather than fetch it.
test_litellm_real.py drives the same callback with the real package."""

import asyncio
import json
import os
from datetime import UTC, datetime

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # read when litellm is imported, below

from gateway_client import UsageClient  # noqa: E402
from gateway_client.litellm_callback import TokenledgerCallback  # noqa: E402
from metering.provider_usage import token_fields  # noqa: E402
from tests.gateway_client.conftest import accept_all  # noqa: E402

END_TIME = 1_796_170_051.25  # epoch seconds, as LiteLLM's endTime
SERVED_AT = datetime.fromtimestamp(END_TIME, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def logging_payload(**overrides) -> dict:
    """A StandardLoggingPayload of a successful proxy call by a key of team `acme`."""
    payload = {
        "id": "chatcmpl-litellm-5f1c", "trace_id": "trace-1", "call_type": "acompletion", "stream": False,
        "response_cost": 0.0012, "status": "success", "custom_llm_provider": "openai",
        "total_tokens": 2242, "prompt_tokens": 1830, "completion_tokens": 412,
        "startTime": END_TIME - 1.5, "endTime": END_TIME, "completionStartTime": END_TIME - 1.2,
        "model": "gpt-5.4-2026-03-05", "model_id": "deploy-1", "model_group": "gpt-5.4",
        "api_base": "https://api.openai.com/v1", "cache_hit": False, "cache_key": None, "saved_cache_cost": 0.0,
        "request_tags": [], "end_user": "", "requester_ip_address": "10.0.0.7", "messages": [], "response": {},
        "error_str": None, "model_parameters": {}, "hidden_params": {"model_id": "deploy-1", "usage_object": None},
        "metadata": {
            "user_api_key_hash": "88dc28d0", "user_api_key_alias": "acme-prod", "user_api_key_team_id": "acme",
            "user_api_key_user_id": "u-1", "user_api_key_end_user_id": None, "requester_metadata": {},
            "spend_logs_metadata": None, "usage_object": {
                "prompt_tokens": 1830, "completion_tokens": 412, "total_tokens": 2242,
                "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": None},
                "completion_tokens_details": {"reasoning_tokens": 128}},
        },
    }
    for key, value in overrides.items():
        if key == "metadata":
            payload["metadata"] = {**payload["metadata"], **value}
        else:
            payload[key] = value
    return payload


class ModelResponse:
    """Stands in for litellm.ModelResponse: a pydantic object with model_dump()."""

    def __init__(self, body: dict):
        self.body = body

    def model_dump(self) -> dict:
        return self.body


@pytest.fixture
def callback(stub_api):
    stub_api.default = (202, {}, accept_all)
    client = UsageClient(rest_url=stub_api.url, api_key="k", flush_interval_s=3600)
    yield TokenledgerCallback(client, region="us-east", cluster="iad-h100-a")
    client.close(timeout_s=1)


def posted(callback, stub_api) -> list[dict]:
    assert callback.client.flush(timeout_s=10)
    return stub_api.events_posted()


def test_openai_chat_call_is_recorded_with_the_providers_own_usage(callback, stub_api):
    raw_usage = {"prompt_tokens": 1830, "completion_tokens": 412, "total_tokens": 2242,
                 "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 128, "audio_tokens": 0}}
    kwargs = {"standard_logging_object": logging_payload(), "litellm_call_id": "chatcmpl-litellm-5f1c",
              "original_response": json.dumps({"id": "chatcmpl-9", "object": "chat.completion", "usage": raw_usage,
                                               "service_tier": "default"})}

    callback.log_success_event(kwargs, ModelResponse({}), None, None)

    (event,) = posted(callback, stub_api)
    assert event == {
        "event_id": "chatcmpl-litellm-5f1c", "customer_id": "acme", "model": "gpt-5.4", "timestamp": SERVED_AT,
        "provider_usage": {"format": "openai.chat", "usage": raw_usage}, "service_tier": "standard",
        "region": "us-east", "cluster": "iad-h100-a",
        "metadata": {"litellm_call_id": "chatcmpl-litellm-5f1c", "provider": "openai",
                     "deployment_model": "gpt-5.4-2026-03-05", "usage_source": "provider"},
    }


def test_anthropic_gemini_and_responses_calls_map_to_their_formats(callback, stub_api):
    anthropic = {"input_tokens": 12, "cache_read_input_tokens": 1024, "cache_creation_input_tokens": 300,
                 "output_tokens": 50, "service_tier": "priority"}
    gemini = {"promptTokenCount": 900, "cachedContentTokenCount": 512, "candidatesTokenCount": 40,
              "thoughtsTokenCount": 60, "totalTokenCount": 1000}
    responses = {"input_tokens": 300, "input_tokens_details": {"cached_tokens": 100}, "output_tokens": 80,
                 "output_tokens_details": {"reasoning_tokens": 30}, "total_tokens": 380}
    calls = [
        ("anthropic", "claude-opus", {"type": "message", "usage": anthropic}),
        ("vertex_ai", "gemini-pro", {"candidates": [], "usageMetadata": gemini}),
        ("openai", "gpt-5.4", {"object": "response", "usage": responses, "service_tier": "flex"}),
    ]

    for n, (provider, model, raw) in enumerate(calls):
        payload = logging_payload(id=f"call-{n}", custom_llm_provider=provider, model_group=model)
        asyncio.run(callback.async_log_success_event(
            {"standard_logging_object": payload, "original_response": json.dumps(raw)}, None, None, None))

    events = posted(callback, stub_api)
    assert [(e["event_id"], e["model"], e["provider_usage"]["format"], e["service_tier"]) for e in events] == [
        ("call-0", "claude-opus", "anthropic.messages", "priority"),
        ("call-1", "gemini-pro", "gemini", "standard"),
        ("call-2", "gpt-5.4", "openai.responses", "flex"),
    ]
    assert [e["provider_usage"]["usage"] for e in events] == [anthropic, gemini, responses]


def test_without_the_raw_response_litellms_usage_is_read_by_its_shape(callback, stub_api):
    streamed_openai = logging_payload(id="s-1", stream=True)
    litellm_anthropic_usage = {  # LiteLLM's normalized Usage of an Anthropic call: prompt_tokens has it all
        "prompt_tokens": 1336, "completion_tokens": 50, "total_tokens": 1386,
        "prompt_tokens_details": {"cached_tokens": 1024, "cache_creation_tokens": 300,
                                  "cache_creation_token_details": {"ephemeral_5m_input_tokens": 200,
                                                                   "ephemeral_1h_input_tokens": 100}},
        "cache_creation_input_tokens": 300, "cache_read_input_tokens": 1024, "completion_tokens_details": None,
    }
    streamed_anthropic = logging_payload(id="s-2", custom_llm_provider="anthropic", model_group="claude-opus",
                                         metadata={"usage_object": None})

    callback.log_success_event({"standard_logging_object": streamed_openai}, None, None, None)
    callback.log_success_event({"standard_logging_object": streamed_anthropic},
                               ModelResponse({"usage": litellm_anthropic_usage}), None, None)

    first, second = posted(callback, stub_api)
    assert first["provider_usage"] == {"format": "openai.chat", "usage": {
        "prompt_tokens": 1830, "completion_tokens": 412, "total_tokens": 2242,
        "prompt_tokens_details": {"cached_tokens": 1024}, "completion_tokens_details": {"reasoning_tokens": 128}}}
    assert first["metadata"]["usage_source"] == "litellm"
    assert second["provider_usage"] == {"format": "anthropic.messages", "usage": {
        "input_tokens": 12, "output_tokens": 50, "cache_read_input_tokens": 1024, "cache_creation_input_tokens": 300,
        "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 100}}}


def test_claude_resold_by_a_cloud_is_read_as_anthropic_with_or_without_the_raw_response(callback, stub_api):
    raw_usage = {"input_tokens": 12, "cache_read_input_tokens": 1024, "cache_creation_input_tokens": 300,
                 "output_tokens": 50}
    litellm_usage = {"prompt_tokens": 1336, "completion_tokens": 50, "total_tokens": 1386,
                     "prompt_tokens_details": {"cached_tokens": 1024}, "cache_creation_input_tokens": 300,
                     "cache_read_input_tokens": 1024}
    with_raw = logging_payload(id="v-1", custom_llm_provider="vertex_ai", model_group="claude-sonnet-4-5",
                               metadata={"usage_object": None})
    without_raw = logging_payload(id="v-2", custom_llm_provider="vertex_ai", model_group="claude-sonnet-4-5",
                                  metadata={"usage_object": None})
    plain = logging_payload(id="v-3", custom_llm_provider="bedrock", model_group="anthropic.claude-haiku",
                            metadata={"usage_object": None})

    callback.log_success_event({"standard_logging_object": with_raw, "original_response": json.dumps(
        {"type": "message", "usage": raw_usage})}, None, None, None)
    callback.log_success_event({"standard_logging_object": without_raw}, ModelResponse({"usage": litellm_usage}),
                               None, None)
    callback.log_success_event({"standard_logging_object": plain, "original_response": json.dumps(
        {"type": "message", "usage": {"input_tokens": 7, "output_tokens": 3}})}, None, None, None)

    first, second, third = posted(callback, stub_api)
    assert first["provider_usage"] == {"format": "anthropic.messages", "usage": raw_usage}
    assert second["provider_usage"]["format"] == "anthropic.messages"
    assert token_fields(second["provider_usage"])["cache_write_tokens"] == 300  # not priced as plain input
    assert token_fields(second["provider_usage"])["input_tokens"] == 1336
    assert third["provider_usage"] == {"format": "anthropic.messages", "usage": {"input_tokens": 7, "output_tokens": 3}}


def test_the_customer_comes_from_the_configured_key_and_cache_hits_are_not_billed(stub_api):
    stub_api.default = (202, {}, accept_all)
    client = UsageClient(rest_url=stub_api.url, api_key="k", flush_interval_s=3600)
    by_end_user = TokenledgerCallback(client, customer_id_keys=("user_api_key_end_user_id", "end_user"))
    by_team = TokenledgerCallback(client)

    by_end_user.log_success_event({"standard_logging_object": logging_payload(id="e-1", end_user="globex")},
                                  None, None, None)
    cached = by_team.record({"standard_logging_object": logging_payload(id="e-2", cache_hit=True)}, None)
    orphan = by_team.record({"standard_logging_object": logging_payload(
        id="e-3", metadata={"user_api_key_team_id": None})}, None)
    assert client.flush(timeout_s=10)
    client.close()

    assert [(e["event_id"], e["customer_id"]) for e in stub_api.events_posted()] == [("e-1", "globex")]
    assert (cached, orphan, by_team.unattributed) == (None, None, 1)
