"""Kafka → ledger through the real consumer, against the real broker and Postgres."""

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Sum

from metering.models import DeadLetter, HourlyRollup, UsageDuplicate, UsageEvent
from scripts.traffic import Traffic, messages_produce
from tests.conftest import utc
from tests.metering.factories import event, token_sums
from tests.metering.kafka_helpers import offsets_uncommitted, read_topic, send

pytestmark = pytest.mark.django_db(transaction=True)


def ledger_sums(customer_ids) -> dict:
    rows = UsageEvent.objects.filter(customer_id__in=customer_ids)
    sums = rows.aggregate(input_tokens=Sum("input_tokens"), cached_input_tokens=Sum("cached_input_tokens"),
                          output_tokens=Sum("output_tokens"))
    return {"events": rows.count(), **sums}


def rollup_sums(customer_ids) -> dict:
    rows = HourlyRollup.objects.filter(customer_id__in=customer_ids)
    return rows.aggregate(events=Sum("events"), input_tokens=Sum("input_tokens"),
                          cached_input_tokens=Sum("cached_input_tokens"), output_tokens=Sum("output_tokens"))


def test_single_and_batched_messages_reach_the_ledger_and_rollups(catalog, topics, producer, drain):
    singles = [event(), event(model="gpt-5.4-mini"), event(customer_id="globex")]
    batch = [event(service_tier="batch", cached_input_tokens=0) for _ in range(4)]
    for e in singles:
        send(producer, topics["usage"], e, key=e["customer_id"])
    send(producer, topics["usage"], batch)
    producer.flush()

    stats = drain()

    sent = singles + batch
    assert stats.appended == 7
    assert set(UsageEvent.objects.values_list("event_id", flat=True)) == {e["event_id"] for e in sent}
    assert ledger_sums(["acme", "globex"]) == token_sums(sent)
    assert rollup_sums(["acme", "globex"]) == token_sums(sent)
    stored = UsageEvent.objects.get(event_id=batch[0]["event_id"])
    assert (stored.service_tier, stored.cached_input_tokens, stored.metadata) == ("batch", 0, {"request_id": "gw-7f3a"})


def test_invalid_and_undecodable_go_to_the_dead_letters_and_the_partition_keeps_flowing(
    catalog, topics, producer, drain, kafka_bootstrap
):
    before, after = event(), event()
    bad = event(cached_input_tokens=5000, input_tokens=10)
    mixed = [event(), event(model="gpt-unknown")]
    send(producer, topics["usage"], before)
    send(producer, topics["usage"], b"\x00\xffnot json at all", raw=True)
    send(producer, topics["usage"], bad)
    send(producer, topics["usage"], mixed)
    send(producer, topics["usage"], event(customer_id="globex"), key="acme")  # key says acme
    send(producer, topics["usage"], after)
    producer.flush()

    drain()

    ledger_ids = set(UsageEvent.objects.values_list("event_id", flat=True))
    assert ledger_ids == {before["event_id"], after["event_id"], mixed[0]["event_id"]}
    letters = {(d.kind, d.reason): d for d in DeadLetter.objects.all()}
    assert set(letters) == {("undecodable", "undecodable_json"), ("invalid", "cached_exceeds_input"),
                            ("invalid", "model_unknown"), ("invalid", "key_mismatch")}
    assert letters[("invalid", "cached_exceeds_input")].errors == {
        "cached_input_tokens": ["Must not exceed input_tokens."]}
    assert letters[("invalid", "model_unknown")].source_index == 1
    assert letters[("invalid", "model_unknown")].payload == mixed[1]
    dlq = [json.loads(r.value) for r in read_topic(kafka_bootstrap, topics["dlq"], expected=4)]
    assert sorted(m["reason"] for m in dlq) == ["cached_exceeds_input", "key_mismatch", "model_unknown", "undecodable_json"]
    assert next(m for m in dlq if m["reason"] == "undecodable_json")["raw_base64"]


def test_duplicates_are_counted_and_conflicts_kept_aside_with_both_payloads(catalog, topics, producer, drain):
    original, other = event(), event()
    conflicting = dict(original, output_tokens=original["output_tokens"] + 1)
    send(producer, topics["usage"], original)
    send(producer, topics["usage"], original)
    send(producer, topics["usage"], [other, dict(other), conflicting, original])
    producer.flush()

    stats = drain()

    assert (stats.appended, stats.duplicates, stats.conflicts) == (2, 3, 1)
    assert UsageDuplicate.objects.filter(event_id=original["event_id"]).count() == 2
    assert UsageDuplicate.objects.filter(event_id=other["event_id"]).count() == 1
    conflict = DeadLetter.objects.get(kind="conflict")
    assert conflict.event_id == original["event_id"]
    assert conflict.payload["output_tokens"] == conflicting["output_tokens"]
    assert conflict.existing_payload["output_tokens"] == original["output_tokens"]
    assert UsageEvent.objects.get(event_id=original["event_id"]).output_tokens == original["output_tokens"]


def test_replaying_the_whole_topic_from_offset_zero_changes_nothing(catalog, topics, producer, drain):
    traffic = Traffic(customers=["acme", "globex"], models=["gpt-5.4", "gpt-5.4-mini"], seed=11,
                      start=utc(2026, 11, 1), end=utc(2026, 11, 20), duplicate_rate=0.05, conflict_rate=0.02,
                      invalid_rate=0.02)
    messages_produce(producer, topics["usage"], traffic.messages(600, batch_size=1, undecodable=2))
    messages_produce(producer, topics["usage"], traffic.messages(900, batch_size=50))

    drain()
    first = snapshot()
    drain(group=topics["group"] + "-replay")

    assert snapshot() == first
    tally = traffic.tally
    assert first["ledger"]["events"] == tally.accepted
    assert first["duplicates"] == tally.duplicates
    assert first["conflicts"] == tally.conflicts
    assert first["dead_letters"] == tally.invalid + tally.undecodable
    assert first["rollups"]["events"] == tally.accepted


def snapshot() -> dict:
    customers = ["acme", "globex"]
    return {
        "ledger": ledger_sums(customers), "rollups": rollup_sums(customers),
        "duplicates": UsageDuplicate.objects.count(),
        "conflicts": DeadLetter.objects.filter(kind="conflict").count(),
        "dead_letters": DeadLetter.objects.exclude(kind="conflict").count(),
    }


def test_every_rule_broken_on_kafka_becomes_a_dead_letter_with_its_reason(
    catalog, topics, producer, drain, kafka_bootstrap
):
    from tests.metering.test_schemas import BROKEN

    now = datetime.now(UTC)
    relative = {"timestamp_in_future": {"timestamp": (now + timedelta(minutes=10)).isoformat()},
                "timestamp_too_old": {"timestamp": (now - timedelta(days=36)).isoformat()}}
    cases = [(field, relative.get(reason, overrides), reason) for field, overrides, reason in BROKEN]
    bodies = [event(**overrides) for _, overrides, _ in cases]
    for body in bodies:
        send(producer, topics["usage"], body, key=None)
    trailing = event()
    send(producer, topics["usage"], trailing, key=None)
    producer.flush()

    drain()

    letters = list(DeadLetter.objects.order_by("source_partition", "source_offset"))
    assert sorted(d.reason for d in letters) == sorted(reason for _, _, reason in cases)
    for letter in letters:
        field, _, _ = next(c for c in cases if c[2] == letter.reason)
        assert field in letter.errors, letter.reason
    dlq = [json.loads(r.value) for r in read_topic(kafka_bootstrap, topics["dlq"], expected=len(cases))]
    assert sorted(m["reason"] for m in dlq) == sorted(reason for _, _, reason in cases)
    assert list(UsageEvent.objects.values_list("event_id", flat=True)) == [trailing["event_id"]]


def test_an_element_postgres_refuses_is_isolated_and_dead_lettered(catalog, topics, producer, drain,
                                                                  postgres_refuses):
    before, after = event(), event()
    poison = event(event_id=postgres_refuses + "1")  # valid, refused by the fault in the database
    send(producer, topics["usage"], before)
    send(producer, topics["usage"], [poison, dict(before)])
    send(producer, topics["usage"], after)
    producer.flush()

    stats = drain()

    assert set(UsageEvent.objects.values_list("event_id", flat=True)) == {before["event_id"], after["event_id"]}
    letter = DeadLetter.objects.get(event_id=poison["event_id"])
    assert (letter.kind, letter.reason, letter.source_index) == ("invalid", "write_failed", 0)
    assert "test fault" in letter.errors["non_field_errors"][0]
    assert (stats.appended, stats.duplicates) == (2, 1)


def deep_json(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def test_what_postgres_cannot_store_is_refused_by_the_validator_and_the_partition_keeps_flowing(
    catalog, topics, producer, drain, kafka_bootstrap
):
    before, after = event(), event()
    refused = {
        "event_id_nul_character": event(event_id="evt-\u0000-nul"),
        "event_id_lone_surrogate": event(event_id="evt-\ud800"),
        "metadata_nul_character": event(metadata={"k\u0000": "v"}),
        "metadata_lone_surrogate": event(metadata={"a": {"b": ["\udfff"]}}),
        "metadata_not_finite": event(metadata={"ratio": float("inf")}),
    }
    too_deep = event()
    nan_tokens = event(input_tokens=float("nan"))  # refused as not an int; its dead letter must store NaN
    send(producer, topics["usage"], before)
    for body in refused.values():
        send(producer, topics["usage"], body)
    deep = json.dumps(too_deep)[:-1] + ', "metadata": ' + deep_json(10_000) + "}"
    send(producer, topics["usage"], deep.encode(), raw=True)
    send(producer, topics["usage"], [nan_tokens, event(metadata={"x": "y\u0000"})])
    send(producer, topics["usage"], after)
    producer.flush()

    drain()

    assert set(UsageEvent.objects.values_list("event_id", flat=True)) == {before["event_id"], after["event_id"]}
    letters = {d.reason: d for d in DeadLetter.objects.all()}
    assert set(letters) == {*refused, "metadata_too_deep", "input_tokens_invalid"}
    assert DeadLetter.objects.filter(reason="metadata_nul_character").count() == 2
    for reason in ("event_id_nul_character", "event_id_lone_surrogate"):
        assert list(letters[reason].errors) == ["event_id"]
    assert letters["event_id_nul_character"].event_id == "evt-\\u0000-nul"  # stored, escaped
    assert list(letters["metadata_too_deep"].errors) == ["metadata"]
    assert letters["metadata_too_deep"].event_id == too_deep["event_id"]
    assert letters["input_tokens_invalid"].payload["input_tokens"] == "NaN"
    dlq = [json.loads(r.value) for r in read_topic(kafka_bootstrap, topics["dlq"], expected=8)]
    assert sorted(m["reason"] for m in dlq) == sorted(
        [*refused, "metadata_nul_character", "metadata_too_deep", "input_tokens_invalid"])


def test_poison_elements_in_a_large_batch_are_isolated_by_bisection(catalog, topics, producer, drain,
                                                                     kafka_bootstrap, postgres_refuses):
    elements = [event(cached_input_tokens=0, metadata=None) for _ in range(6_000)]
    poison_at = (17, 2_900, 5_999)
    for index in poison_at:
        elements[index]["event_id"] = f"{postgres_refuses}{index}"
    for start in range(0, len(elements), 500):
        send(producer, topics["usage"], elements[start:start + 500])
    producer.flush()

    stats = drain()

    poisons = {elements[i]["event_id"] for i in poison_at}
    ledger_ids = set(UsageEvent.objects.values_list("event_id", flat=True))
    assert ledger_ids == {e["event_id"] for e in elements} - poisons
    letters = DeadLetter.objects.all()
    assert {(d.event_id, d.reason) for d in letters} == {(p, "write_failed") for p in poisons}
    # One transaction per element would be 6,000; halving costs at most 2·⌈log2 n⌉ per poison.
    assert 0 < stats.isolation_writes <= 2 * len(poisons) * math.ceil(math.log2(len(elements)))
    assert offsets_uncommitted(kafka_bootstrap, topics["usage"], group=topics["group"]) == {}
    first = snapshot()

    replay = drain(group=topics["group"] + "-replay")

    assert snapshot() == first and replay.appended == 0
    assert DeadLetter.objects.count() == len(poisons) and not UsageDuplicate.objects.exists()


class CrashMidway(Exception):
    """Stands for the process dying (SIGKILL, OOM) between two of the bisection's transactions."""


def test_a_crash_mid_bisection_replays_as_a_no_op_for_the_halves_committed(catalog, topics, producer, drain,
                                                                           postgres_refuses, monkeypatch):
    from metering.consumer import runner

    elements = [event(cached_input_tokens=0) for _ in range(2_000)]
    elements[1_500]["event_id"] = postgres_refuses + "x"
    for start in range(0, len(elements), 250):
        send(producer, topics["usage"], elements[start:start + 250])
    producer.flush()
    calls, real_append = [], runner.ledger_append

    def append_then_crash(*, accepted):
        calls.append(len(accepted))
        if len(calls) == 4:  # after the batch failed and at least one half committed
            raise CrashMidway
        return real_append(accepted=accepted)

    monkeypatch.setattr(runner, "ledger_append", append_then_crash)
    with pytest.raises(CrashMidway):
        drain()
    committed_before_crash = UsageEvent.objects.count()
    monkeypatch.setattr(runner, "ledger_append", real_append)

    stats = drain()

    assert 0 < committed_before_crash < len(elements) - 1
    assert stats.appended == len(elements) - 1 - committed_before_crash
    assert UsageEvent.objects.count() == len(elements) - 1
    assert not UsageDuplicate.objects.exists()
    assert list(DeadLetter.objects.values_list("event_id", "reason")) == [(postgres_refuses + "x", "write_failed")]
    assert rollup_sums(["acme"]) == token_sums([e for e in elements if e["event_id"] != postgres_refuses + "x"])
