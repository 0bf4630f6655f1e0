"""The consumer's pure check step per event: plain events, provider usage objects, and the
authoritative path they fall back to.

    .venv/bin/python -m bench.check [--events 20000]

Builds arrays of 1,000 events of one customer (as a gateway sends them) with token fields,
and the same requests as OpenAI, Anthropic and Gemini usage objects, and times
`steps.check` over them: on the compiled path (`schemas.event_accept_fast`) and with it
switched off (`json` + `event_validate`, what every element not settled by the compiled
path costs). No Kafka, no database. Prints microseconds per event as JSON.
"""

import argparse
import json
import time
from datetime import UTC, datetime, timedelta

from kafka.consumer.fetcher import ConsumerRecord

NOW = datetime(2026, 11, 3, 14, 10, tzinfo=UTC)
BASE = {"customer_id": "acme", "model": "gpt-5.4", "timestamp": "2026-11-03T14:07:31.218Z",
        "service_tier": "standard", "region": "us-east", "cluster": "iad-h100-a"}
USAGE = {
    "plain": {"input_tokens": 1830, "cached_input_tokens": 1024, "output_tokens": 412, "reasoning_tokens": 100},
    "openai.chat": {"provider_usage": {"format": "openai.chat", "usage": {
        "prompt_tokens": 1830, "completion_tokens": 412, "total_tokens": 2242,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 100, "audio_tokens": 0}}}},
    "anthropic.messages": {"provider_usage": {"format": "anthropic.messages", "usage": {
        "input_tokens": 20, "cache_read_input_tokens": 1024, "cache_creation_input_tokens": 786, "output_tokens": 412,
        "cache_creation": {"ephemeral_5m_input_tokens": 786, "ephemeral_1h_input_tokens": 0}}}},
    "gemini": {"provider_usage": {"format": "gemini", "usage": {
        "promptTokenCount": 1830, "cachedContentTokenCount": 1024, "candidatesTokenCount": 312,
        "thoughtsTokenCount": 100, "totalTokenCount": 2242}}},
}


def records(kind: str, events: int) -> list[ConsumerRecord]:
    value = json.dumps([{**BASE, "event_id": f"{kind}-{i}", **USAGE[kind]} for i in range(1_000)]).encode()
    return [ConsumerRecord(topic="usage", partition=0, leader_epoch=-1, offset=offset,
                           timestamp=int(NOW.timestamp() * 1000), timestamp_type=0, key=b"acme", value=value,
                           headers=[], checksum=None, serialized_key_size=4, serialized_value_size=len(value),
                           serialized_header_size=-1) for offset in range(events // 1_000)]


def per_event_us(batch: list, *, compiled: bool) -> float:
    from metering.consumer import steps
    from metering.schemas import Catalog

    catalog = Catalog(customers=frozenset({"acme"}), models=frozenset({"gpt-5.4"}))
    fast = steps._check_fast
    if not compiled:
        steps._check_fast = lambda record, **kwargs: False
    try:
        started = time.perf_counter()
        result = steps.check(batch, catalog=catalog, lateness=timedelta(days=35), now=NOW)
        seconds = time.perf_counter() - started
    finally:
        steps._check_fast = fast
    assert len(result.accepted) == 1_000 * len(batch) and not result.rejected
    return round(seconds / len(result.accepted) * 1e6, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    events = parser.parse_args().events
    from bench._setup import conditions

    figures = {"conditions": conditions(), "events": events, "us_per_event": {}}
    for kind in USAGE:
        batch = records(kind, events)
        figures["us_per_event"][kind] = {"compiled": per_event_us(batch, compiled=True),
                                         "authoritative": per_event_us(batch, compiled=False)}
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
