"""The provider usage adapters (metering/provider_usage): documented payloads in,
hand-checked token fields out, and every unreadable object refused with its reason.

Payloads of the providers' documented shapes are in tests/metering/provider_usage/;
each test picks the object a gateway passes (the response's usage, or for a stream the
one object that format's module names) and states the expected fields literally.
"""

import copy
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metering.provider_usage import FORMATS, UsageUnreadable, anthropic_stream_usage, token_fields

PAYLOADS = Path(__file__).parent / "provider_usage"
FIELD_NAMES = (
    "input_tokens", "cached_input_tokens", "output_tokens", "cache_write_tokens",
    "cache_write_long_tokens", "audio_input_tokens", "audio_output_tokens", "reasoning_tokens",
)


def payload(name: str):
    return json.loads((PAYLOADS / name).read_text())


def expected(**nonzero: int) -> dict[str, int]:
    """The eight fields, zero unless named: keeps each expectation down to what it is about."""
    return {name: nonzero.pop(name, 0) for name in FIELD_NAMES} | nonzero


def refusal(provider_usage) -> UsageUnreadable:
    with pytest.raises(UsageUnreadable) as caught:
        token_fields(provider_usage)
    return caught.value


def assert_rules(fields: dict) -> None:
    assert tuple(fields) == FIELD_NAMES
    assert all(type(value) is int and 0 <= value <= 10**12 for value in fields.values())
    assert (fields["cached_input_tokens"] + fields["cache_write_tokens"] + fields["cache_write_long_tokens"]
            + fields["audio_input_tokens"]) <= fields["input_tokens"]
    assert fields["audio_output_tokens"] <= fields["output_tokens"]
    assert fields["reasoning_tokens"] <= fields["output_tokens"]


class TestOpenAIChat:
    def test_cached_prompt_is_part_of_the_input(self):
        usage = payload("openai_chat_cached.json")["usage"]

        fields = token_fields({"format": "openai.chat", "usage": usage})

        assert fields == expected(input_tokens=2006, cached_input_tokens=1920, output_tokens=300)

    def test_reasoning_is_part_of_the_output(self):
        usage = payload("openai_chat_reasoning.json")["usage"]

        fields = token_fields({"format": "openai.chat", "usage": usage})

        assert fields == expected(input_tokens=1117, cached_input_tokens=1024, output_tokens=2400,
                                  reasoning_tokens=1856)

    def test_audio_in_and_out(self):
        usage = payload("openai_chat_audio.json")["usage"]

        fields = token_fields({"format": "openai.chat", "usage": usage})

        assert fields == expected(input_tokens=1350, audio_input_tokens=1200, output_tokens=620,
                                  audio_output_tokens=512)

    def test_streamed_usage_is_the_last_chunks(self):
        chunks = payload("openai_chat_stream.json")

        fields = token_fields({"format": "openai.chat", "usage": chunks[-1]["usage"]})

        assert [chunk["usage"] for chunk in chunks[:-1]] == [None] * 4
        assert fields == expected(input_tokens=1500, cached_input_tokens=1408, output_tokens=42)

    def test_minimal_object_and_nulls_read_as_zero(self):
        usage = {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
                 "prompt_tokens_details": None,
                 "completion_tokens_details": {"reasoning_tokens": None, "audio_tokens": None}}

        fields = token_fields({"format": "openai.chat", "usage": usage})

        assert fields == expected(input_tokens=19, output_tokens=10)

    def test_cached_audio_breakdown_is_subtracted_from_the_audio(self):
        usage = {"prompt_tokens": 2400, "completion_tokens": 5,
                 "prompt_tokens_details": {"cached_tokens": 1280, "audio_tokens": 1900,
                                           "cached_tokens_details": {"text_tokens": 256, "audio_tokens": 1024}}}

        fields = token_fields({"format": "openai.chat", "usage": usage})

        assert fields == expected(input_tokens=2400, cached_input_tokens=1280, audio_input_tokens=876,
                                  output_tokens=5)

    def test_cached_plus_audio_beyond_the_prompt_without_breakdown_is_refused(self):
        usage = {"prompt_tokens": 2400, "completion_tokens": 5,
                 "prompt_tokens_details": {"cached_tokens": 1280, "audio_tokens": 1900}}

        error = refusal({"format": "openai.chat", "usage": usage})

        assert error.reason == "provider_usage_inconsistent"
        assert "usage.prompt_tokens_details.cached_tokens + uncached" in error.message


class TestOpenAIResponses:
    def test_reasoning_and_cache(self):
        usage = payload("openai_responses_reasoning.json")["usage"]

        fields = token_fields({"format": "openai.responses", "usage": usage})

        assert fields == expected(input_tokens=4821, cached_input_tokens=4608, output_tokens=1533,
                                  reasoning_tokens=1152)

    def test_streamed_usage_is_response_completed(self):
        events = payload("openai_responses_stream.json")
        completed = next(event for event in events if event["type"] == "response.completed")

        fields = token_fields({"format": "openai.responses", "usage": completed["response"]["usage"]})

        assert fields == expected(input_tokens=37, output_tokens=11)

    def test_realtime_shape_with_cached_audio(self):
        usage = payload("openai_realtime_response_done.json")["response"]["usage"]

        fields = token_fields({"format": "openai.responses", "usage": usage})

        # audio 1900 of which 1024 cached: 876 uncached audio; 1280 cached in all.
        assert fields == expected(input_tokens=2412, cached_input_tokens=1280, audio_input_tokens=876,
                                  output_tokens=465, audio_output_tokens=368)

    def test_both_spellings_of_the_details_are_refused(self):
        usage = {"input_tokens": 10, "output_tokens": 1, "input_tokens_details": {"cached_tokens": 0},
                 "input_token_details": {"cached_tokens": 0}}

        error = refusal({"format": "openai.responses", "usage": usage})

        assert (error.reason, error.message) == (
            "provider_usage_invalid", "usage carries both input_tokens_details and input_token_details.")


class TestAnthropicMessages:
    def test_reads_and_both_write_lifetimes_are_added_to_the_input(self):
        usage = payload("anthropic_cache_read_and_writes.json")["usage"]

        fields = token_fields({"format": "anthropic.messages", "usage": usage})

        # 40 uncached + 3000 read + 1500 written (300 for 5 min, 1200 for 1 h)
        assert fields == expected(input_tokens=4540, cached_input_tokens=3000, cache_write_tokens=300,
                                  cache_write_long_tokens=1200, output_tokens=512)

    def test_short_cache_write(self):
        usage = payload("anthropic_cache_write_5m.json")["usage"]

        fields = token_fields({"format": "anthropic.messages", "usage": usage})

        assert fields == expected(input_tokens=2200, cache_write_tokens=2188, output_tokens=350)

    def test_without_breakdown_every_write_is_short(self):
        usage = {"input_tokens": 8, "cache_creation_input_tokens": 1024, "cache_read_input_tokens": None,
                 "output_tokens": 64}

        fields = token_fields({"format": "anthropic.messages", "usage": usage})

        assert fields == expected(input_tokens=1032, cache_write_tokens=1024, output_tokens=64)

    def test_breakdown_disagreeing_with_the_total_is_refused(self):
        usage = {"input_tokens": 8, "cache_creation_input_tokens": 1024, "output_tokens": 64,
                 "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 0}}

        error = refusal({"format": "anthropic.messages", "usage": usage})

        assert error.reason == "provider_usage_inconsistent"
        assert "usage.cache_creation_input_tokens is 1024" in error.message

    def test_derived_input_beyond_the_limit_is_refused(self):
        usage = {"input_tokens": 10**12, "cache_read_input_tokens": 1, "output_tokens": 0}

        error = refusal({"format": "anthropic.messages", "usage": usage})

        assert error.reason == "provider_usage_invalid"
        assert "input_tokens" in error.message


class TestAnthropicStream:
    START = {"type": "message_start", "message": {"id": "msg_1", "type": "message", "usage": {
        "input_tokens": 30, "cache_creation_input_tokens": 1800, "cache_read_input_tokens": 6000,
        "cache_creation": {"ephemeral_5m_input_tokens": 600, "ephemeral_1h_input_tokens": 1200},
        "output_tokens": 1, "service_tier": "standard"}}}

    def delta(self, **usage) -> dict:
        return {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": usage}

    def test_full_stream_keeps_the_cache_writes_of_message_start(self):
        events = payload("anthropic_stream.json")

        usage = anthropic_stream_usage(events)
        fields = token_fields({"format": "anthropic.messages", "usage": usage})

        assert usage == {"input_tokens": 30, "cache_creation_input_tokens": 1800, "cache_read_input_tokens": 6000,
                         "cache_creation": {"ephemeral_5m_input_tokens": 600, "ephemeral_1h_input_tokens": 1200},
                         "output_tokens": 742, "service_tier": "standard"}
        assert fields == expected(input_tokens=7830, cached_input_tokens=6000, cache_write_tokens=600,
                                  cache_write_long_tokens=1200, output_tokens=742)

    def test_deltas_are_cumulative_not_summed(self):
        events = [self.START, self.delta(output_tokens=300), self.delta(output_tokens=742), {"type": "message_stop"}]

        usage = anthropic_stream_usage(events)

        assert usage["output_tokens"] == 742

    def test_nulls_in_the_delta_keep_message_starts_values(self):
        delta = self.delta(input_tokens=None, cache_creation_input_tokens=None, cache_read_input_tokens=None,
                           output_tokens=742, server_tool_use=None)

        fields = token_fields({"format": "anthropic.messages", "usage": anthropic_stream_usage([self.START, delta])})

        assert fields == expected(input_tokens=7830, cached_input_tokens=6000, cache_write_tokens=600,
                                  cache_write_long_tokens=1200, output_tokens=742)

    def test_delta_restating_the_input_side_overrides_it(self):
        delta = self.delta(input_tokens=30, cache_creation_input_tokens=1800, cache_read_input_tokens=6500,
                           output_tokens=742, server_tool_use={"web_search_requests": 1})

        fields = token_fields({"format": "anthropic.messages", "usage": anthropic_stream_usage([self.START, delta])})

        assert fields == expected(input_tokens=8330, cached_input_tokens=6500, cache_write_tokens=600,
                                  cache_write_long_tokens=1200, output_tokens=742)

    def test_delta_with_a_new_breakdown_replaces_it_whole(self):
        delta = self.delta(cache_creation_input_tokens=2400, output_tokens=742,
                           cache_creation={"ephemeral_5m_input_tokens": 1200, "ephemeral_1h_input_tokens": 1200})

        fields = token_fields({"format": "anthropic.messages", "usage": anthropic_stream_usage([self.START, delta])})

        assert fields == expected(input_tokens=8430, cached_input_tokens=6000, cache_write_tokens=1200,
                                  cache_write_long_tokens=1200, output_tokens=742)

    def test_delta_changing_the_writes_without_a_breakdown_is_refused(self):
        usage = anthropic_stream_usage([self.START, self.delta(cache_creation_input_tokens=2400, output_tokens=742)])

        error = refusal({"format": "anthropic.messages", "usage": usage})

        assert error.reason == "provider_usage_inconsistent"

    def test_the_last_delta_alone_is_refused_not_billed_as_no_input(self):
        error = refusal({"format": "anthropic.messages", "usage": {"output_tokens": 742}})

        assert (error.reason, error.message) == ("provider_usage_invalid", "usage.input_tokens is missing.")

    def test_events_are_not_modified(self):
        events = payload("anthropic_stream.json")
        before = copy.deepcopy(events)

        usage = anthropic_stream_usage(events)
        usage["cache_creation"]["ephemeral_1h_input_tokens"] = 0

        assert events == before

    @pytest.mark.parametrize(("events", "message"), [
        ({"type": "message_start"}, "The stream events must be an array of event objects."),
        ([], "The stream has no message_start event."),
        ([{"type": "ping"}, {"type": "message_stop"}], "The stream has no message_start event."),
        (["message_start"], "events[0] must be an object."),
        ([{"type": "message_delta", "usage": {"output_tokens": 3}}],
         "events[0] is a message_delta before any message_start."),
        ([START, START], "events[1] is a second message_start."),
        ([{"type": "message_start", "message": {"id": "msg_1"}}], "events[0].message.usage must be an object."),
        ([{"type": "message_start", "message": None}], "events[0].message.usage must be an object."),
        ([START, {"type": "message_delta", "usage": [742]}], "events[1].usage must be an object, got [742]."),
    ])
    def test_unreadable_streams_are_refused(self, events, message):
        with pytest.raises(UsageUnreadable) as caught:
            anthropic_stream_usage(events)

        assert (caught.value.reason, caught.value.message) == ("provider_usage_invalid", message)


class TestGemini:
    def test_thoughts_are_output_and_cached_content_is_part_of_the_prompt(self):
        usage = payload("gemini_thinking_cached.json")["usageMetadata"]

        fields = token_fields({"format": "gemini", "usage": usage})

        assert fields == expected(input_tokens=15320, cached_input_tokens=12288, output_tokens=2304,
                                  reasoning_tokens=1424)

    def test_audio_prompt(self):
        usage = payload("gemini_audio.json")["usageMetadata"]

        fields = token_fields({"format": "gemini", "usage": usage})

        assert fields == expected(input_tokens=4850, audio_input_tokens=4800, output_tokens=230)

    def test_cached_audio_is_not_uncached_audio_and_audio_output_is_read(self):
        usage = payload("gemini_audio_cached_audio_out.json")["usageMetadata"]

        fields = token_fields({"format": "gemini", "usage": usage})

        assert fields == expected(input_tokens=9650, cached_input_tokens=8000, audio_input_tokens=1600,
                                  output_tokens=1200, audio_output_tokens=1150)

    def test_tool_use_prompt_is_input(self):
        usage = payload("gemini_tool_use.json")["usageMetadata"]

        fields = token_fields({"format": "gemini", "usage": usage})

        assert fields == expected(input_tokens=3520, output_tokens=405, reasoning_tokens=95)

    def test_streamed_usage_is_the_last_chunks(self):
        chunks = payload("gemini_stream.json")

        fields = token_fields({"format": "gemini", "usage": chunks[-1]["usageMetadata"]})

        assert fields == expected(input_tokens=1210, output_tokens=972, reasoning_tokens=317)

    def test_live_api_spelling(self):
        usage = {"promptTokenCount": 2000, "responseTokenCount": 600, "totalTokenCount": 2600,
                 "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 1800}, {"modality": "TEXT", "tokenCount": 200}],
                 "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 600}]}

        fields = token_fields({"format": "gemini", "usage": usage})

        assert fields == expected(input_tokens=2000, audio_input_tokens=1800, output_tokens=600,
                                  audio_output_tokens=600)

    def test_omitted_zeros(self):
        usage = {"promptTokenCount": 5, "totalTokenCount": 5, "promptTokensDetails": [{"modality": "TEXT"}]}

        fields = token_fields({"format": "gemini", "usage": usage})

        assert fields == expected(input_tokens=5)

    def test_a_whole_response_is_refused_with_a_hint(self):
        response = payload("gemini_audio.json")

        error = refusal({"format": "gemini", "usage": response})

        assert (error.reason, error.message) == (
            "provider_usage_invalid", "usage is a whole response: pass its usageMetadata as usage.")


class TestUnknownKeys:
    @pytest.mark.parametrize(("format_", "usage", "fields"), [
        ("openai.chat", {"prompt_tokens": 9, "completion_tokens": 4, "future": {"x": [1, None]},
                         "prompt_tokens_details": {"cached_tokens": 0, "video_tokens": "n/a"}},
         expected(input_tokens=9, output_tokens=4)),
        ("openai.responses", {"input_tokens": 9, "output_tokens": 4, "cost": 0.25,
                              "output_tokens_details": {"reasoning_tokens": 2, "tool_tokens": [3]}},
         expected(input_tokens=9, output_tokens=4, reasoning_tokens=2)),
        ("anthropic.messages", {"input_tokens": 9, "output_tokens": 4, "service_tier": "batch",
                                "server_tool_use": {"web_search_requests": 2}, "inference_geo": "us",
                                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0,
                                                   "ephemeral_24h_input_tokens": "later"}},
         expected(input_tokens=9, output_tokens=4)),
        ("gemini", {"promptTokenCount": 9, "candidatesTokenCount": 4, "trafficType": "ON_DEMAND",
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 9, "extra": True}]},
         expected(input_tokens=9, output_tokens=4)),
    ])
    def test_are_ignored(self, format_, usage, fields):
        assert token_fields({"format": format_, "usage": usage}) == fields


class TestRefusals:
    @pytest.mark.parametrize("provider_usage", [None, [], "openai.chat", 3, True])
    def test_not_an_object(self, provider_usage):
        assert refusal(provider_usage).reason == "provider_usage_invalid"

    def test_format_missing(self):
        error = refusal({"usage": {"prompt_tokens": 1, "completion_tokens": 1}})

        assert (error.reason, error.message) == ("provider_usage_invalid", "provider_usage.format is missing.")

    @pytest.mark.parametrize("format_", ["openai.completions", "OpenAI.Chat", "anthropic", "", None, 1, ["gemini"]])
    def test_unknown_format(self, format_):
        error = refusal({"format": format_, "usage": {"prompt_tokens": 1, "completion_tokens": 1}})

        assert error.reason == "provider_usage_format_unknown"
        assert "provider_usage.format" in error.message

    @pytest.mark.parametrize("format_", FORMATS)
    @pytest.mark.parametrize("usage", [None, [], "{}", 7])
    def test_usage_missing_or_not_an_object(self, format_, usage):
        provider_usage = {"format": format_} if usage is None else {"format": format_, "usage": usage}

        error = refusal(provider_usage)

        assert error.reason == "provider_usage_invalid"
        assert error.message.startswith("provider_usage.usage ")

    @pytest.mark.parametrize("bad", [-1, 1.0, 2.5, True, False, "12", [3], {"n": 3}, 10**12 + 1])
    @pytest.mark.parametrize(("format_", "usage", "set_bad", "path"), [
        ("openai.chat", {"prompt_tokens": 100, "completion_tokens": 10},
         lambda u, v: u.update(prompt_tokens=v), "usage.prompt_tokens"),
        ("openai.chat", {"prompt_tokens": 100, "completion_tokens": 10, "prompt_tokens_details": {}},
         lambda u, v: u["prompt_tokens_details"].update(cached_tokens=v), "usage.prompt_tokens_details.cached_tokens"),
        ("openai.responses", {"input_tokens": 100, "output_tokens": 10, "output_tokens_details": {}},
         lambda u, v: u["output_tokens_details"].update(reasoning_tokens=v),
         "usage.output_tokens_details.reasoning_tokens"),
        ("anthropic.messages", {"input_tokens": 100, "output_tokens": 10},
         lambda u, v: u.update(cache_read_input_tokens=v), "usage.cache_read_input_tokens"),
        ("anthropic.messages", {"input_tokens": 100, "output_tokens": 10, "cache_creation": {}},
         lambda u, v: u["cache_creation"].update(ephemeral_1h_input_tokens=v),
         "usage.cache_creation.ephemeral_1h_input_tokens"),
        ("gemini", {"promptTokenCount": 100},
         lambda u, v: u.update(thoughtsTokenCount=v), "usage.thoughtsTokenCount"),
        ("gemini", {"promptTokenCount": 100, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1}, {}]},
         lambda u, v: u["promptTokensDetails"][1].update(modality="AUDIO", tokenCount=v),
         "usage.promptTokensDetails[1].tokenCount"),
    ])
    def test_a_count_that_is_not_a_non_negative_integer(self, format_, usage, set_bad, path, bad):
        usage = copy.deepcopy(usage)
        set_bad(usage, bad)

        error = refusal({"format": format_, "usage": usage})

        assert error.reason == "provider_usage_invalid"
        assert error.message.startswith(f"{path} must be ")

    @pytest.mark.parametrize(("format_", "usage", "message"), [
        ("openai.chat", {"completion_tokens": 10}, "usage.prompt_tokens is missing."),
        ("openai.chat", {"prompt_tokens": None, "completion_tokens": 10}, "usage.prompt_tokens is missing."),
        ("openai.responses", {"input_tokens": 10}, "usage.output_tokens is missing."),
        ("anthropic.messages", {"input_tokens": 10}, "usage.output_tokens is missing."),
        ("gemini", {"candidatesTokenCount": 10}, "usage.promptTokenCount is missing."),
    ])
    def test_a_required_count_missing(self, format_, usage, message):
        error = refusal({"format": format_, "usage": usage})

        assert (error.reason, error.message) == ("provider_usage_invalid", message)

    @pytest.mark.parametrize(("format_", "usage", "message"), [
        ("openai.chat", {"prompt_tokens": 1, "completion_tokens": 1, "prompt_tokens_details": []},
         "usage.prompt_tokens_details must be an object, got []."),
        ("openai.responses", {"input_tokens": 1, "output_tokens": 1,
                              "input_token_details": {"cached_tokens": 0, "cached_tokens_details": 5}},
         "usage.input_token_details.cached_tokens_details must be an object, got 5."),
        ("anthropic.messages", {"input_tokens": 1, "output_tokens": 1, "cache_creation": 5},
         "usage.cache_creation must be an object, got 5."),
        ("gemini", {"promptTokenCount": 1, "promptTokensDetails": {"modality": "AUDIO", "tokenCount": 1}},
         "usage.promptTokensDetails must be an array, got {'modality': 'AUDIO', 'tokenCount': 1}."),
        ("gemini", {"promptTokenCount": 1, "cacheTokensDetails": [7]}, "usage.cacheTokensDetails[0] must be an object."),
        ("gemini", {"promptTokenCount": 1, "promptTokensDetails": [{"modality": 2, "tokenCount": 1}]},
         "usage.promptTokensDetails[0].modality must be a string."),
        ("gemini", {"promptTokenCount": 1, "candidatesTokenCount": 1, "responseTokenCount": 1},
         "usage carries both candidatesTokenCount and responseTokenCount."),
    ])
    def test_a_nested_object_of_the_wrong_type(self, format_, usage, message):
        error = refusal({"format": format_, "usage": usage})

        assert (error.reason, error.message) == ("provider_usage_invalid", message)

    @pytest.mark.parametrize(("format_", "usage", "message"), [
        ("openai.chat", {"prompt_tokens": 100, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 101}},
         "usage.prompt_tokens_details.cached_tokens (101) exceeds usage.prompt_tokens (100)."),
        ("openai.chat", {"prompt_tokens": 100, "completion_tokens": 10, "prompt_tokens_details": {"audio_tokens": 120}},
         "usage.prompt_tokens_details.audio_tokens (120) exceeds usage.prompt_tokens (100)."),
        ("openai.chat", {"prompt_tokens": 100, "completion_tokens": 10, "completion_tokens_details": {"audio_tokens": 11}},
         "usage.completion_tokens_details.audio_tokens (11) exceeds usage.completion_tokens (10)."),
        ("openai.responses", {"input_tokens": 100, "output_tokens": 10, "output_tokens_details": {"reasoning_tokens": 64}},
         "usage.output_tokens_details.reasoning_tokens (64) exceeds usage.output_tokens (10)."),
        ("openai.responses", {"input_tokens": 100, "output_tokens": 10, "input_token_details": {
            "cached_tokens": 50, "audio_tokens": 20, "cached_tokens_details": {"audio_tokens": 30}}},
         "usage.input_token_details.cached_tokens_details.audio_tokens (30) exceeds usage.input_token_details.audio_tokens (20)."),
        ("openai.responses", {"input_tokens": 100, "output_tokens": 10, "input_token_details": {
            "cached_tokens": 10, "audio_tokens": 40, "cached_tokens_details": {"audio_tokens": 30}}},
         "usage.input_token_details.cached_tokens_details.audio_tokens (30) exceeds usage.input_token_details.cached_tokens (10)."),
        ("gemini", {"promptTokenCount": 100, "cachedContentTokenCount": 200},
         "usage.cachedContentTokenCount (200) exceeds usage.promptTokenCount (100)."),
        ("gemini", {"promptTokenCount": 100, "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 60},
                                                                     {"modality": "AUDIO", "tokenCount": 60}]},
         "AUDIO of usage.promptTokensDetails (120) exceeds usage.promptTokenCount (100)."),
        ("gemini", {"promptTokenCount": 100, "cachedContentTokenCount": 50,
                    "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 10}],
                    "cacheTokensDetails": [{"modality": "AUDIO", "tokenCount": 20}]},
         "AUDIO of usage.cacheTokensDetails (20) exceeds AUDIO of usage.promptTokensDetails (10)."),
        ("gemini", {"promptTokenCount": 100, "cachedContentTokenCount": 50,
                    "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 80}]},
         "usage.cachedContentTokenCount + uncached AUDIO of the prompt (130) exceeds usage.promptTokenCount (100)."),
        ("gemini", {"promptTokenCount": 100, "candidatesTokenCount": 5, "thoughtsTokenCount": 50,
                    "candidatesTokensDetails": [{"modality": "AUDIO", "tokenCount": 6}]},
         "AUDIO of usage.candidatesTokensDetails (6) exceeds usage.candidatesTokenCount (5)."),
    ])
    def test_a_part_larger_than_its_whole(self, format_, usage, message):
        error = refusal({"format": format_, "usage": usage})

        assert (error.reason, error.message) == ("provider_usage_inconsistent", message)

    def test_the_error_is_a_value_error_carrying_its_message(self):
        error = refusal({"format": "gemini", "usage": {}})

        assert isinstance(error, ValueError)
        assert str(error) == error.message == "usage.promptTokenCount is missing."


# Property tests: valid objects are drawn from disjoint parts (uncached text, cached
# audio, ...), so the test knows each provider total independently of the adapter.
parts = st.integers(min_value=0, max_value=10**11)
maybe_null = st.sampled_from([None, 0])


@st.composite
def openai_usage(draw, *, responses: bool):
    text, audio, cached_text, cached_audio = draw(parts), draw(parts), draw(parts), draw(parts)
    with_breakdown = draw(st.booleans())
    cached_audio = cached_audio if with_breakdown else 0
    out_text, reasoning, out_audio = draw(parts), draw(parts), draw(parts)
    prompt, completion = text + audio + cached_text + cached_audio, out_text + reasoning + out_audio
    details = {"cached_tokens": cached_text + cached_audio, "audio_tokens": audio + cached_audio}
    if with_breakdown:
        details["cached_tokens_details"] = {"text_tokens": cached_text, "audio_tokens": cached_audio}
    out_details = {"reasoning_tokens": reasoning or draw(maybe_null), "audio_tokens": out_audio or draw(maybe_null)}
    if responses:
        realtime = draw(st.booleans())
        usage = {"input_tokens": prompt, "output_tokens": completion, "total_tokens": prompt + completion,
                 "input_token_details" if realtime else "input_tokens_details": details,
                 "output_token_details" if realtime else "output_tokens_details": out_details}
    else:
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                 "prompt_tokens_details": details, "completion_tokens_details": out_details}
    truth = expected(input_tokens=prompt, cached_input_tokens=cached_text + cached_audio, audio_input_tokens=audio,
                     output_tokens=completion, audio_output_tokens=out_audio, reasoning_tokens=reasoning)
    return usage, truth


@st.composite
def anthropic_usage(draw):
    uncached, read, short, long, output = (draw(parts) for _ in range(5))
    usage = {"input_tokens": uncached, "cache_read_input_tokens": read or draw(maybe_null),
             "cache_creation_input_tokens": short + long, "output_tokens": output}
    if long or draw(st.booleans()):
        usage["cache_creation"] = {"ephemeral_5m_input_tokens": short, "ephemeral_1h_input_tokens": long}
    truth = expected(input_tokens=uncached + read + short + long, cached_input_tokens=read, cache_write_tokens=short,
                     cache_write_long_tokens=long, output_tokens=output)
    return usage, truth


@st.composite
def gemini_usage(draw):
    text, audio, cached_text, cached_audio, tool = (draw(parts) for _ in range(5))
    out_text, out_audio, thoughts = draw(parts), draw(parts), draw(parts)
    usage = {"promptTokenCount": text + audio + cached_text + cached_audio,
             "cachedContentTokenCount": cached_text + cached_audio,
             "toolUsePromptTokenCount": tool, "candidatesTokenCount": out_text + out_audio,
             "thoughtsTokenCount": thoughts,
             "promptTokensDetails": [{"modality": "TEXT", "tokenCount": text + cached_text},
                                     {"modality": "AUDIO", "tokenCount": audio + cached_audio}],
             "cacheTokensDetails": [{"modality": "AUDIO", "tokenCount": cached_audio},
                                    {"modality": "TEXT", "tokenCount": cached_text}],
             "candidatesTokensDetails": [{"modality": "AUDIO", "tokenCount": out_audio}]}
    usage = {key: value for key, value in usage.items() if value != 0}  # proto3 JSON omits zeros
    usage["promptTokenCount"] = text + audio + cached_text + cached_audio
    truth = expected(input_tokens=text + audio + cached_text + cached_audio + tool,
                     cached_input_tokens=cached_text + cached_audio, audio_input_tokens=audio,
                     output_tokens=out_text + out_audio + thoughts, audio_output_tokens=out_audio,
                     reasoning_tokens=thoughts)
    return usage, truth


class TestProperties:
    @given(st.one_of(
        st.tuples(st.just("openai.chat"), openai_usage(responses=False)),
        st.tuples(st.just("openai.responses"), openai_usage(responses=True)),
        st.tuples(st.just("anthropic.messages"), anthropic_usage()),
        st.tuples(st.just("gemini"), gemini_usage()),
    ))
    def test_valid_objects_keep_the_rules_and_conserve_tokens(self, drawn):
        format_, (usage, truth) = drawn

        fields = token_fields({"format": format_, "usage": usage})

        assert_rules(fields)
        assert fields == truth

    @given(anthropic_usage(), st.integers(min_value=1, max_value=4), st.booleans())
    def test_anthropic_stream_merge_equals_the_final_usage(self, drawn, deltas, restate_input):
        usage, truth = drawn
        start = dict(usage, output_tokens=1)
        restated = {key: usage[key] for key in ("input_tokens", "cache_read_input_tokens") if restate_input}
        events = [{"type": "message_start", "message": {"usage": start}}, {"type": "ping"}]
        events += [{"type": "message_delta", "usage": {"output_tokens": usage["output_tokens"] * (i + 1) // deltas}}
                   for i in range(deltas - 1)]
        events += [{"type": "message_delta", "usage": restated | {"output_tokens": usage["output_tokens"]}},
                   {"type": "message_stop"}]

        fields = token_fields({"format": "anthropic.messages", "usage": anthropic_stream_usage(events)})

        assert fields == truth

    # Anything JSON can hold, under the keys the adapters read: they return fields that
    # keep the rules or refuse with UsageUnreadable, never another exception.
    scalars = (st.none() | st.booleans() | st.integers(min_value=-3, max_value=10**12 + 3) | st.floats()
               | st.text(max_size=2) | st.sampled_from([0, 1, 5, 100, 10**12, "AUDIO", "TEXT"]))
    KEYS = {
        "openai.chat": ["prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details"],
        "openai.responses": ["input_tokens", "output_tokens", "input_tokens_details", "input_token_details",
                             "output_tokens_details", "output_token_details"],
        "anthropic.messages": ["input_tokens", "output_tokens", "cache_read_input_tokens",
                               "cache_creation_input_tokens", "cache_creation"],
        "gemini": ["promptTokenCount", "cachedContentTokenCount", "candidatesTokenCount", "thoughtsTokenCount",
                   "toolUsePromptTokenCount", "promptTokensDetails", "cacheTokensDetails", "candidatesTokensDetails"],
    }
    NESTED = ["cached_tokens", "audio_tokens", "reasoning_tokens", "cached_tokens_details",
              "ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens", "modality", "tokenCount"]
    inner = st.dictionaries(st.sampled_from(NESTED), scalars, max_size=3)
    nested = st.dictionaries(st.sampled_from(NESTED), scalars | inner, max_size=3)
    values = scalars | nested | st.lists(nested | scalars, max_size=3)

    @given(st.data())
    def test_any_object_is_read_or_refused(self, data):
        format_ = data.draw(st.sampled_from(FORMATS))
        usage = data.draw(st.dictionaries(st.sampled_from(self.KEYS[format_]), self.values))

        try:
            fields = token_fields({"format": format_, "usage": usage})
        except UsageUnreadable as error:
            assert error.reason in {"provider_usage_invalid", "provider_usage_inconsistent"}
            assert error.message
        else:
            assert_rules(fields)
