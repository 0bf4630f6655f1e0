"""The bounded buffer between `record()` and the sender thread.

Invariants:
- An event is counted in `held` from the moment it is put until a transport has
  acknowledged it (or the server refused it as invalid): an event in flight still
  takes its place, so the bound covers everything the process holds.
- `held` never exceeds `events_max`; a put that finds it full waits for room up to
  its timeout and then refuses. Memory is bounded by events_max × the event size.
- Each customer's events leave in the order they were put; a batch that failed goes
  back to the front of its customer's queue unchanged (same bytes).
"""

import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pending:
    event_id: str
    customer_id: str
    body: bytes  # the event serialized at record(); every retry sends these bytes


@dataclass(frozen=True, slots=True)
class Batch:
    """Events of one customer, sent as one Kafka message or one REST request."""

    customer_id: str
    events: tuple[Pending, ...]

    def array(self) -> bytes:
        return b"[" + b",".join(e.body for e in self.events) + b"]"


class EventBuffer:
    def __init__(self, *, events_max: int):
        if events_max < 1:
            raise ValueError("events_max must be at least 1")
        self.events_max = events_max
        self.cond = threading.Condition()
        self._queues: dict[str, deque[Pending]] = {}
        self._queued = 0
        self.held = 0
        self.queued_since: float | None = None  # monotonic time the queue last became non-empty
        self.full_batch_ready = False

    @property
    def queued(self) -> int:
        return self._queued

    def put(self, item: Pending, *, timeout_s: float, batch_events_max: int) -> bool:
        """Queue `item`, waiting up to `timeout_s` for room; False if there was none."""
        with self.cond:
            if self.held >= self.events_max:
                deadline = time.monotonic() + timeout_s
                while self.held >= self.events_max:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self.cond.wait(remaining)
            queue = self._queues.setdefault(item.customer_id, deque())
            queue.append(item)
            self._queued += 1
            self.held += 1
            wake = self.queued_since is None or (len(queue) >= batch_events_max and not self.full_batch_ready)
            if self.queued_since is None:
                self.queued_since = time.monotonic()
            if len(queue) >= batch_events_max:
                self.full_batch_ready = True
            if wake:  # only the sender waits for events; it needs a nudge only when its deadline changes
                self.cond.notify_all()
            return True

    def take(self, *, events_max: int, bytes_max: int) -> list[Batch]:
        """Everything queued, as batches of one customer each, at most `events_max`
        events and `bytes_max` bytes of array apiece. They stay held until `done`."""
        with self.cond:
            batches = []
            for customer_id, queue in self._queues.items():
                while queue:
                    events, size = [], 2
                    while queue and len(events) < events_max and (
                            not events or size + len(queue[0].body) + 1 <= bytes_max):
                        item = queue.popleft()
                        events.append(item)
                        size += len(item.body) + 1
                    batches.append(Batch(customer_id=customer_id, events=tuple(events)))
            self._queues = {c: q for c, q in self._queues.items() if q}
            self._queued = 0
            self.queued_since = None
            self.full_batch_ready = False
            return batches

    def done(self, batch: Batch) -> None:
        """The batch's events are settled (acknowledged, or refused as invalid)."""
        with self.cond:
            self.held -= len(batch.events)
            self.cond.notify_all()

    def give_back(self, batches: list[Batch]) -> None:
        """Failed batches, back at the front of their customers' queues, in order."""
        with self.cond:
            for batch in reversed(batches):
                self._queues.setdefault(batch.customer_id, deque()).extendleft(reversed(batch.events))
                self._queued += len(batch.events)
            if batches and self.queued_since is None:
                self.queued_since = time.monotonic()
            self.cond.notify_all()
