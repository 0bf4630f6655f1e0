"""UsageClient: what an inference gateway calls once per served request.

`record()` checks and serializes the event on the caller's thread and puts it in a
bounded buffer; one background thread sends the buffer, batched per customer, to
Kafka, or over REST while Kafka cannot be reached, and keeps what neither accepted
for a later attempt. Invariants:

- An event leaves the buffer only when a transport acknowledged it, or the server
  refused it as invalid (logged with the reasons and counted in `rejected`, never
  retried). Nothing is dropped silently; what is still held when `close()` gives up
  is logged with its count.
- Its event_id and bytes are fixed at `record()`, so any resend (a lost
  acknowledgement, Kafka after REST) is an exact duplicate the ledger drops.
- The buffer never holds more than `max_buffered_events`: a full buffer makes
  `record()` wait up to `block_timeout_s`, then raise BufferFull, counted in `refused`.

`check_spend()`, before serving, asks the client's BalanceCache (gateway_client.balance:
made from rest_url and api_key unless one is given) whether the customer may still spend.
"""

import atexit
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from gateway_client.balance import Balance, BalanceCache
from gateway_client.buffer import Batch, EventBuffer, Pending
from gateway_client.events import event_build, event_encode, event_id_new
from gateway_client.transports import (
    BATCH_BYTES_MAX, BATCH_EVENTS_MAX, REST_WRAPPER_BYTES, KafkaSender, RestOutcome, RestSender,
)

logger = logging.getLogger("gateway_client")


class BufferFull(Exception):
    """The buffer stayed full for block_timeout_s: the event was not recorded."""


class ClientClosed(RuntimeError):
    """record() after close()."""


@dataclass(frozen=True, slots=True)
class ClientStats:
    recorded: int = 0     # events accepted by record()
    sent_kafka: int = 0   # acknowledged by Kafka
    sent_rest: int = 0    # accepted by the REST API
    rejected: int = 0     # refused by the server as invalid (logged; never retried)
    refused: int = 0      # record() calls refused with BufferFull
    retries: int = 0      # batch attempts that failed and were put back to be sent again
    buffered: int = 0     # held now: queued or in flight, not yet settled


class UsageClient:
    def __init__(
        self, *, bootstrap_servers: str | None = None, topic: str = "usage-events",
        rest_url: str | None = None, api_key: str | None = None,
        max_buffered_events: int = 100_000, block_timeout_s: float = 0.0, flush_interval_s: float = 0.5,
        kafka_timeout_s: float = 10.0, kafka_retry_interval_s: float = 30.0, rest_timeout_s: float = 10.0,
        retry_backoff_s: float = 0.2, retry_backoff_max_s: float = 10.0, close_timeout_s: float = 10.0,
        batch_events_max: int = BATCH_EVENTS_MAX, client_id: str = "tokenledger-gateway",
        kafka_idempotent: bool = True, kafka_config: dict | None = None, balances: BalanceCache | None = None,
    ):
        if not bootstrap_servers and not rest_url:
            raise ValueError("give bootstrap_servers, rest_url, or both")
        if rest_url and not api_key:
            raise ValueError("rest_url needs api_key (an ingest key)")
        if not 1 <= batch_events_max <= BATCH_EVENTS_MAX:
            raise ValueError(f"batch_events_max must be 1–{BATCH_EVENTS_MAX}")
        self.flush_interval_s, self.block_timeout_s = flush_interval_s, block_timeout_s
        self.close_timeout_s = close_timeout_s
        self.kafka_retry_interval_s = kafka_retry_interval_s
        self.retry_backoff_s, self.retry_backoff_max_s = retry_backoff_s, retry_backoff_max_s
        self.batch_events_max = batch_events_max
        self._buffer = EventBuffer(events_max=max_buffered_events)
        self._cond = self._buffer.cond  # one lock for the buffer, the counters and the sender's state
        self._kafka = KafkaSender(
            bootstrap_servers=bootstrap_servers, topic=topic, client_id=client_id, timeout_s=kafka_timeout_s,
            idempotent=kafka_idempotent, config=kafka_config, on_producer=self._atexit_reorder,
        ) if bootstrap_servers else None
        self._rest = RestSender(rest_url=rest_url, api_key=api_key, timeout_s=rest_timeout_s,
                                user_agent=client_id) if rest_url else None
        self.balances = balances if balances is not None else (
            BalanceCache(rest_url=rest_url, api_key=api_key, user_agent=client_id) if rest_url else None)
        self._counts = dict.fromkeys(("recorded", "sent_kafka", "sent_rest", "rejected", "refused", "retries"), 0)
        self._kafka_down_until = 0.0  # monotonic: until then batches go over REST
        self._rest_paused_until = 0.0  # monotonic: Retry-After, or after a failure
        self._retry_at = 0.0  # monotonic: neither transport took the last attempt; wait till then
        self._backoff_s = 0.0
        self._flush_waiters = 0
        self._closing = False
        self._abandon = False
        self._sender = threading.Thread(target=self._run, name="gateway-client-sender", daemon=True)
        self._sender.start()
        atexit.register(self._atexit_close)

    # --- the gateway's side ------------------------------------------------------

    def record(
        self, *, customer_id: str, model: str, event_id: str | None = None, request_id: str | None = None,
        timestamp: datetime | str | None = None, usage: dict | None = None, provider_usage: dict | None = None,
        input_tokens: int | None = None, output_tokens: int | None = None, cached_input_tokens: int | None = None,
        cache_write_tokens: int | None = None, cache_write_long_tokens: int | None = None,
        audio_input_tokens: int | None = None, audio_output_tokens: int | None = None,
        reasoning_tokens: int | None = None, service_tier: str = "standard", region: str | None = None,
        cluster: str | None = None, metadata: dict | None = None,
    ) -> str:
        """Record one served request; returns its event_id. Never blocks on the network.

        Usage is either the token fields (as keywords or a `usage` dict) or the
        provider's own object, `provider_usage={"format": ..., "usage": {...}}`, which is
        read here by the server's adapter and sent as is. event_id defaults to
        `request_id`, else a fresh unique id. Raises InvalidEvent (or the adapter's
        UsageUnreadable) for an event that can never be valid, BufferFull when the
        buffer stayed full for block_timeout_s, ClientClosed after close()."""
        tokens = {name: value for name, value in {
            "input_tokens": input_tokens, "output_tokens": output_tokens, "cached_input_tokens": cached_input_tokens,
            "cache_write_tokens": cache_write_tokens, "cache_write_long_tokens": cache_write_long_tokens,
            "audio_input_tokens": audio_input_tokens, "audio_output_tokens": audio_output_tokens,
            "reasoning_tokens": reasoning_tokens,
        }.items() if value is not None}
        if usage:
            tokens = {**usage, **tokens}
        event_id = event_id or request_id or event_id_new()
        event = event_build(customer_id=customer_id, model=model, event_id=event_id, timestamp=timestamp,
                            tokens=tokens, provider_usage=provider_usage, service_tier=service_tier,
                            region=region, cluster=cluster, metadata=metadata)
        item = Pending(event_id=event_id, customer_id=customer_id, body=event_encode(event))
        if self._closing:
            raise ClientClosed("this UsageClient is closed")
        if not self._buffer.put(item, timeout_s=self.block_timeout_s, batch_events_max=self.batch_events_max):
            with self._cond:
                self._counts["refused"] += 1
                refused, held = self._counts["refused"], self._buffer.held
            logger.warning("usage event %s of %s refused: buffer full (%d held; %d refused so far)",
                           event_id, customer_id, held, refused)
            raise BufferFull(f"the usage buffer is full ({held} events); event {event_id} was not recorded")
        with self._cond:
            self._counts["recorded"] += 1
        return event_id

    def check_spend(self, customer_id: str) -> Balance | None:
        """Before serving: BalanceCache.check — the balance decided on (None: served
        unchecked, fail-open); raises SpendRefused when tokenledger says not allowed."""
        if self.balances is None:
            raise ValueError("check_spend needs rest_url and api_key, or balances=BalanceCache(...)")
        return self.balances.check(customer_id)

    @property
    def stats(self) -> ClientStats:
        with self._cond:
            return ClientStats(**self._counts, buffered=self._buffer.held)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Send everything recorded so far; True when all of it is settled in time."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._flush_waiters += 1
            self._cond.notify_all()
            try:
                while self._buffer.held:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._sender.is_alive():
                        return False
                    self._cond.wait(remaining)
                return True
            finally:
                self._flush_waiters -= 1

    def close(self, timeout_s: float | None = None) -> bool:
        """Flush (up to timeout_s, default close_timeout_s), stop the sender, close the
        producer. Logs how many events remain undelivered if any; True if none."""
        atexit.unregister(self._atexit_close)
        with self._cond:
            if self._closing and not self._sender.is_alive():
                return self._buffer.held == 0
            self._closing = True
        delivered = self.flush(self.close_timeout_s if timeout_s is None else timeout_s)
        with self._cond:
            self._abandon = True
            self._cond.notify_all()
        self._sender.join(timeout=max(self.close_timeout_s, 1.0) + 5)
        if self._kafka:
            self._kafka.close()
        left = self._buffer.held
        if left:
            logger.error("usage client closed with %d events undelivered (not acknowledged by Kafka or the API); "
                         "they are lost with this process", left)
        return delivered and not left

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _atexit_close(self) -> None:
        self.close()

    def _atexit_reorder(self, _producer) -> None:
        """kafka-python registers an atexit close per producer; atexit runs last-in
        first-out, so re-register ours after it: the flush at exit runs while the
        producer is still open."""
        if not self._closing:
            atexit.unregister(self._atexit_close)
            atexit.register(self._atexit_close)

    # --- the sender thread -------------------------------------------------------

    def _run(self) -> None:
        if self._kafka and (why := self._kafka.connect()):
            self._kafka_down_until = time.monotonic() + self.kafka_retry_interval_s
            logger.warning("cannot reach Kafka at start (%s); %s", why,
                           "using REST meanwhile" if self._rest else "events are kept until it answers")
        while True:
            with self._cond:
                while not self._due_locked():
                    if self._abandon or (self._closing and not self._buffer.held):
                        return
                    self._cond.wait(self._wait_s_locked())
                if self._abandon:
                    return
            batches = self._buffer.take(events_max=self.batch_events_max,
                                        bytes_max=BATCH_BYTES_MAX - REST_WRAPPER_BYTES)
            try:
                self._deliver(batches)
            except Exception:  # noqa: BLE001 -- a bug here must not lose the batches or kill the thread
                logger.exception("usage client: delivery failed unexpectedly; the batches are kept")
                self._retry_later(batches, why="unexpected error")

    def _due_locked(self) -> bool:
        now = time.monotonic()
        if not self._buffer.queued or now < self._retry_at or self._abandon:
            return self._abandon
        return bool(self._flush_waiters or self._closing or self._buffer.full_batch_ready
                    or now - self._buffer.queued_since >= self.flush_interval_s)

    def _wait_s_locked(self) -> float | None:
        now = time.monotonic()
        if self._retry_at > now:
            return self._retry_at - now
        if self._buffer.queued:
            return max(0.0, self._buffer.queued_since + self.flush_interval_s - now)
        return None

    def _deliver(self, batches: list[Batch]) -> None:
        pending, why = batches, None
        if self._kafka and time.monotonic() >= self._kafka_down_until:
            acked, pending, why = self._kafka.send(batches)
            self._settled(acked, "sent_kafka")
            if pending:
                self._kafka_down_until = time.monotonic() + self.kafka_retry_interval_s
                logger.warning("Kafka did not acknowledge %d batches (%s); %s", len(pending), why,
                               "falling back to REST" if self._rest else "keeping them to retry")
        if pending and self._rest and time.monotonic() >= self._rest_paused_until:
            pending, why = self._deliver_rest(pending, why)
        if pending:
            # Neither took it: the next attempt tries Kafka first again, whatever came back first.
            self._kafka_down_until = 0.0
            self._retry_later(pending, why=why or "no transport available now")
        else:
            with self._cond:
                self._backoff_s, self._retry_at = 0.0, 0.0

    def _deliver_rest(self, batches: list[Batch], why: str | None) -> tuple[list[Batch], str | None]:
        queue = list(batches)
        while queue:
            batch = queue.pop(0)
            outcome = self._rest.send(batch)
            if outcome.kind == "split":
                half = len(batch.events) // 2
                queue[:0] = [Batch(batch.customer_id, batch.events[:half]),
                             Batch(batch.customer_id, batch.events[half:])]
            elif outcome.kind == "delivered":
                self._rest_settled(batch, outcome)
            else:
                pause = outcome.retry_after_s if outcome.retry_after_s is not None else 0.0
                self._rest_paused_until = time.monotonic() + pause
                logger.warning("the usage API did not take %d events (%s)", len(batch.events), outcome.detail)
                return [batch, *queue], f"REST: {outcome.detail}"
        return [], why

    def _rest_settled(self, batch: Batch, outcome: RestOutcome) -> None:
        for rejection in outcome.rejected:
            index = rejection.get("index")
            event = batch.events[index] if isinstance(index, int) and 0 <= index < len(batch.events) else None
            logger.error("usage event %s of %s rejected by the API, not retried: %s",
                         event.event_id if event else rejection.get("event_id"), batch.customer_id,
                         rejection.get("errors"))
        with self._cond:
            self._counts["rejected"] += len(outcome.rejected)
            self._counts["sent_rest"] += len(batch.events) - len(outcome.rejected)
        self._buffer.done(batch)

    def _settled(self, batches: list[Batch], counter: str) -> None:
        for batch in batches:
            with self._cond:
                self._counts[counter] += len(batch.events)
            self._buffer.done(batch)

    def _retry_later(self, batches: list[Batch], *, why: str) -> None:
        self._buffer.give_back(batches)
        with self._cond:
            self._counts["retries"] += len(batches)
            self._backoff_s = min(self.retry_backoff_max_s, max(self.retry_backoff_s, self._backoff_s * 2))
            now = time.monotonic()
            # not before a transport may be tried again (a Retry-After, Kafka's pause)
            available_at = min(self._kafka_down_until if self._kafka else float("inf"),
                               self._rest_paused_until if self._rest else float("inf"))
            self._retry_at = max(now + self._backoff_s, available_at)
            retry_in, held = self._retry_at - now, self._buffer.held
        logger.warning("usage client: %d events held, retrying in %.1fs (%s)", held, retry_in, why)
