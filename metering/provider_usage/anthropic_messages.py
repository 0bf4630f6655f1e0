"""`anthropic.messages`: the `usage` object of an Anthropic Messages response.

Anthropic's `input_tokens` counts only the uncached prompt tokens after the last cache
breakpoint: `cache_read_input_tokens` and `cache_creation_input_tokens` come on top. So
our input_tokens is their sum, our cached_input_tokens the cache reads, and the cache
creation is split by its lifetime: `cache_creation.ephemeral_5m_input_tokens` is the
short write, `ephemeral_1h_input_tokens` the long one. Without a `cache_creation`
object (older API versions) every write is taken as short, the only lifetime those had.
A breakdown that does not sum to `cache_creation_input_tokens` is refused: either number
could be the wrong one, and the two lifetimes are priced differently.

Thinking tokens are inside `output_tokens` and Anthropic does not count them apart, so
reasoning_tokens stays 0. `server_tool_use` and `service_tier` are not token counts and
are not read.

Streamed: the usage is split over the stream. `message_start` carries `message.usage`
with the input side (cache reads and writes, the 5m/1h breakdown) and a provisional
`output_tokens`; each `message_delta` carries a `usage` whose counts are cumulative,
always `output_tokens` and sometimes the input side again. `stream_usage` merges them:
never sum the deltas, and never take the last delta alone (it usually lacks the cache
counts and the breakdown).
"""

import copy

from metering.provider_usage._read import INCONSISTENT, INVALID, UsageUnreadable, count, fields, obj


def token_fields(usage: dict) -> dict[str, int]:
    uncached = count(usage, "input_tokens", "usage", required=True)
    cache_read = count(usage, "cache_read_input_tokens", "usage")
    cache_creation = count(usage, "cache_creation_input_tokens", "usage")
    output = count(usage, "output_tokens", "usage", required=True)
    if usage.get("cache_creation") is None:
        short, long = cache_creation, 0
    else:
        breakdown = obj(usage, "cache_creation", "usage")
        short = count(breakdown, "ephemeral_5m_input_tokens", "usage.cache_creation")
        long = count(breakdown, "ephemeral_1h_input_tokens", "usage.cache_creation")
        if short + long != cache_creation:
            raise UsageUnreadable(INCONSISTENT, (
                f"usage.cache_creation sums to {short + long} (5m {short} + 1h {long}) but "
                f"usage.cache_creation_input_tokens is {cache_creation}."))
    return fields(
        input_tokens=uncached + cache_read + cache_creation, cached_input_tokens=cache_read,
        cache_write_tokens=short, cache_write_long_tokens=long, output_tokens=output,
    )


def stream_usage(events: list[dict]) -> dict:
    """One usage object from a stream's SSE event objects (the parsed `data` of each).

    Starts from `message_start`'s `message.usage`; each `message_delta`'s `usage` then
    overrides the keys it carries with a non-null value (a null means "not reported"
    and keeps the earlier value; a nested object is replaced whole). Other events
    (content blocks, ping, message_stop, error) carry no usage and are skipped.
    The events are not modified.
    """
    if not isinstance(events, list):
        raise UsageUnreadable(INVALID, "The stream events must be an array of event objects.")
    usage = None
    for index, event in enumerate(events):
        where = f"events[{index}]"
        if not isinstance(event, dict):
            raise UsageUnreadable(INVALID, f"{where} must be an object.")
        kind = event.get("type")
        if kind == "message_start":
            if usage is not None:
                raise UsageUnreadable(INVALID, f"{where} is a second message_start.")
            message = event.get("message")
            if not isinstance(message, dict) or not isinstance(message.get("usage"), dict):
                raise UsageUnreadable(INVALID, f"{where}.message.usage must be an object.")
            usage = copy.deepcopy(message["usage"])
        elif kind == "message_delta":
            if usage is None:
                raise UsageUnreadable(INVALID, f"{where} is a message_delta before any message_start.")
            delta = obj(event, "usage", where)
            usage.update({key: copy.deepcopy(value) for key, value in delta.items() if value is not None})
    if usage is None:
        raise UsageUnreadable(INVALID, "The stream has no message_start event.")
    return usage
