"""`openai.responses`: the `usage` object of an OpenAI Responses API response.

Also reads the realtime spelling of the same object (`response.done`'s `response.usage`):
`input_token_details` / `output_token_details`, with `cached_tokens_details` saying how
much of the cache was audio. `input_tokens` includes the cached tokens and the audio;
`output_tokens` includes reasoning and audio. Uncached audio as in `openai_chat`.
An object carrying both spellings of one details object is refused: we could not say
which one the provider meant.

Streamed: the gateway passes `response.usage` of the terminal event, `response.completed`
(or `response.incomplete` / `response.failed`, which carry the usage served so far);
the earlier events carry no usage.
"""

from metering.provider_usage._read import INVALID, UsageUnreadable, count, fields, obj
from metering.provider_usage.openai_chat import input_parts, output_parts


def _details(usage: dict, responses_key: str, realtime_key: str) -> tuple[dict, str]:
    if usage.get(responses_key) is not None and usage.get(realtime_key) is not None:
        raise UsageUnreadable(INVALID, f"usage carries both {responses_key} and {realtime_key}.")
    key = realtime_key if usage.get(realtime_key) is not None else responses_key
    return obj(usage, key, "usage"), f"usage.{key}"


def token_fields(usage: dict) -> dict[str, int]:
    input_tokens = count(usage, "input_tokens", "usage", required=True)
    output_tokens = count(usage, "output_tokens", "usage", required=True)
    cached, audio_input = input_parts(
        *_details(usage, "input_tokens_details", "input_token_details"), input_tokens, "usage.input_tokens")
    reasoning, audio_output = output_parts(
        *_details(usage, "output_tokens_details", "output_token_details"), output_tokens, "usage.output_tokens")
    return fields(
        input_tokens=input_tokens, cached_input_tokens=cached, audio_input_tokens=audio_input,
        output_tokens=output_tokens, audio_output_tokens=audio_output, reasoning_tokens=reasoning,
    )
