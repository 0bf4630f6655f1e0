"""Provider usage adapters (DESIGN.md §1 "Provider usage"): a provider's own usage
object, as a gateway received it, mapped to our token fields.

Pure: stdlib only, no Django, no I/O, no clock. `token_fields` either returns the eight
fields, every one an int in [0, 10**12] that keeps the rules

    cached_input + cache_write + cache_write_long + audio_input <= input_tokens
    audio_output <= output_tokens,  reasoning <= output_tokens

or raises UsageUnreadable with a stable reason and a message naming the field at fault;
it never returns numbers the event validator would refuse. Each format's module
documents that provider's meanings and which object a gateway passes for a streamed
response; `anthropic_stream_usage` builds that object for Anthropic, whose usage is
spread over the stream.

Keys we do not read are ignored (providers add fields); a key we read with the wrong
type is refused. Optional counts that are absent or null read as 0.
"""

from metering.provider_usage import anthropic_messages, gemini, openai_chat, openai_responses
from metering.provider_usage._read import FIELD_NAMES, FORMAT_UNKNOWN, INCONSISTENT, INVALID, UsageUnreadable

FORMATS = ("openai.chat", "openai.responses", "anthropic.messages", "gemini")
_ADAPTERS = {
    "openai.chat": openai_chat.token_fields,
    "openai.responses": openai_responses.token_fields,
    "anthropic.messages": anthropic_messages.token_fields,
    "gemini": gemini.token_fields,
}
REASONS = (INVALID, FORMAT_UNKNOWN, INCONSISTENT)

__all__ = ["FIELD_NAMES", "FORMATS", "REASONS", "UsageUnreadable", "anthropic_stream_usage", "token_fields"]


def token_fields(provider_usage) -> dict[str, int]:
    """The token fields of an event's `provider_usage` value, `{"format": F, "usage": {...}}`."""
    if not isinstance(provider_usage, dict):
        raise UsageUnreadable(INVALID, "provider_usage must be an object with format and usage.")
    if "format" not in provider_usage:
        raise UsageUnreadable(INVALID, "provider_usage.format is missing.")
    format_ = provider_usage["format"]
    if not isinstance(format_, str):
        raise UsageUnreadable(FORMAT_UNKNOWN, f"provider_usage.format must be a string, got {type(format_).__name__}.")
    if format_ not in _ADAPTERS:
        shown = format_ if len(format_) <= 40 else format_[:37] + "..."
        raise UsageUnreadable(FORMAT_UNKNOWN, f"provider_usage.format {shown!r} is not one of {', '.join(FORMATS)}.")
    usage = provider_usage.get("usage")
    if not isinstance(usage, dict):
        problem = "is missing" if usage is None else "must be an object"
        raise UsageUnreadable(INVALID, f"provider_usage.usage {problem}.")
    return _ADAPTERS[format_](usage)


def anthropic_stream_usage(events: list[dict]) -> dict:
    """The one Anthropic usage object of a streamed response, from its SSE event objects
    (message_start, message_delta, ...), to pass as `usage` with format anthropic.messages.
    See `anthropic_messages.stream_usage` for the merge rule."""
    return anthropic_messages.stream_usage(events)
