"""Spend control at the gateway (DESIGN.md §7): a customer's balance, read from
tokenledger's `GET /customers/{customer_id}/balance` with the gateway's key (ingest, or
the customer's own), cached per customer, and a local refusal when it says
`allowed: false`.

    balances = BalanceCache(rest_url="https://tokenledger.example/api/v1", api_key="tl_...")
    balances.check("acme")  # the Balance decided on; raises SpendRefused when not allowed

Invariants:
- A check decides on a balance that arrived at most `ttl_s` ago (0: every check asks),
  or one that arrived while it waited: at most one request per customer is in flight,
  and a check that finds one waits for its answer instead of sending its own.
- The refusal is always the server's: the client refuses on an `allowed: false` it was
  told, never on arithmetic of its own. Money is Decimal, parsed from the API's strings.

When tokenledger gives no answer (connection refused or timed out, a 5xx, a 429, a body
that is not a balance), the last known balance still decides, its refusal included, while
it is at most `stale_max_s` old. Past that, or with none, `fail_open` decides: True (the
default) serves unchecked and logs it, because billing must not take a gateway down;
False raises BalanceUnavailable. After a request that got no answer the next one waits
`retry_interval_s` (or the server's Retry-After), so an outage does not cost every
request a timeout. A 404 (no such customer, or another customer's, read with a customer
key) raises UnknownCustomer and a 401/403 BalanceKeyRejected, whatever the policy: those
are answers, and serving through them would turn spend control off for good unnoticed.
Neither is cached: a customer created a moment later is seen at once.
"""

import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from gateway_client.transports import _json, _retry_after_s

logger = logging.getLogger("gateway_client")


@dataclass(frozen=True, slots=True)
class Balance:
    """API.md's balance of the current period, as tokenledger answered it."""

    customer_id: str
    period: str  # YYYY-MM
    spend: Decimal
    credit_remaining: Decimal
    budget: Decimal | None  # None: no budget
    budget_remaining: Decimal | None
    allowed: bool  # False once spend reached a hard budget's limit
    as_of: datetime  # the ledger is exact up to here
    lag_ms: int
    unpriced: bool  # some usage has no price yet and is not in spend


class BalanceError(Exception):
    """Base of what a balance check raises."""


class SpendRefused(BalanceError):
    """tokenledger said this customer may not spend (`allowed: false`)."""

    def __init__(self, balance: Balance):
        budget = f"its hard budget of {balance.budget}" if balance.budget is not None else "its budget"
        super().__init__(f"customer {balance.customer_id} may not spend: {balance.spend} spent in {balance.period}, "
                         f"{budget} reached (balance as of {balance.as_of.isoformat()})")
        self.balance = balance


class UnknownCustomer(BalanceError):
    """404: no such customer, or not one this key may read."""

    def __init__(self, customer_id: str):
        super().__init__(f"tokenledger knows no customer {customer_id!r} (or this key may not read it)")
        self.customer_id = customer_id


class BalanceKeyRejected(BalanceError):
    """401/403: the gateway's API key is unknown, revoked, or of a scope that cannot read balances."""


class BalanceUnavailable(BalanceError):
    """No answer from tokenledger and no last known balance young enough, with fail_open=False."""


class Unanswered(Exception):
    """A request that got no balance: the failure policy decides."""

    def __init__(self, detail: str, retry_after_s: float | None = None):
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class BalanceReader:
    """One GET of a balance over HTTP. Returns the Balance, raises UnknownCustomer,
    BalanceKeyRejected, or Unanswered for anything else."""

    def __init__(self, *, rest_url: str, api_key: str, timeout_s: float, user_agent: str):
        self.base_url = rest_url.rstrip("/") + "/customers/"
        self.headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json", "User-Agent": user_agent}
        self.timeout_s = timeout_s

    def get(self, customer_id: str) -> Balance:
        url = f"{self.base_url}{urllib.parse.quote(customer_id, safe='')}/balance"
        request = urllib.request.Request(url, headers=self.headers, method="GET")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = _json(response.read())
        except urllib.error.HTTPError as exc:
            status, retry_after = exc.code, exc.headers.get("Retry-After")
            exc.close()
            if status == 404:
                raise UnknownCustomer(customer_id) from None
            if status in (401, 403):
                raise BalanceKeyRejected(f"GET {url}: {status}: the gateway's API key cannot read balances") from None
            raise Unanswered(f"GET {url}: {status}", retry_after_s=_retry_after_s(retry_after)) from None
        except (OSError, ValueError) as exc:  # refused, reset, timed out
            raise Unanswered(f"GET {url}: {exc!r}") from None
        try:
            return balance_parse(payload)
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise Unanswered(f"GET {url}: not a balance ({exc!r}): {str(payload)[:200]}") from None


def _money(value) -> Decimal:
    if not isinstance(value, str):  # the API's money is a string; a float here is a bug upstream
        raise TypeError(f"money must be a string, not {value!r}")
    amount = Decimal(value)
    if not amount.is_finite():
        raise ValueError(f"money must be finite, not {value!r}")
    return amount


def balance_parse(payload) -> Balance:
    """The API's JSON balance as a Balance; raises on anything else."""
    if not isinstance(payload, dict) or not isinstance(payload["allowed"], bool):
        raise TypeError("a balance is an object with a boolean 'allowed'")
    optional = {name: None if payload[name] is None else _money(payload[name])
                for name in ("budget", "budget_remaining")}
    as_of = datetime.fromisoformat(payload["as_of"])
    if as_of.tzinfo is None:
        raise ValueError("as_of must carry an offset")
    return Balance(customer_id=str(payload["customer_id"]), period=str(payload["period"]),
                   spend=_money(payload["spend"]), credit_remaining=_money(payload["credit_remaining"]), **optional,
                   allowed=payload["allowed"], as_of=as_of, lag_ms=int(payload["lag_ms"]),
                   unpriced=bool(payload.get("unpriced", False)))


@dataclass(slots=True)
class _Entry:
    balance: Balance | None = None
    received_at: float = 0.0  # clock time the balance arrived
    fetching: bool = False
    answers: int = 0  # requests finished, whatever came of them: what a waiting check watches
    outcome: str = ""  # of the last request: "balance", "unanswered", "error" (a 404 or 401/403)
    why: str = ""  # why the last unanswered request got nothing
    retry_at: float = 0.0  # after an unanswered request: no other before then


class BalanceCache:
    def __init__(self, *, rest_url: str, api_key: str, ttl_s: float = 2.0, fail_open: bool = True,
                 stale_max_s: float = 60.0, retry_interval_s: float = 1.0, timeout_s: float = 2.0,
                 user_agent: str = "tokenledger-gateway", clock: Callable[[], float] = time.monotonic):
        if ttl_s < 0 or stale_max_s < 0 or retry_interval_s < 0 or timeout_s <= 0:
            raise ValueError("ttl_s, stale_max_s and retry_interval_s must be ≥ 0 and timeout_s > 0")
        self.ttl_s, self.fail_open, self.stale_max_s = ttl_s, fail_open, stale_max_s
        self.retry_interval_s, self.timeout_s = retry_interval_s, timeout_s
        self.reader = BalanceReader(rest_url=rest_url, api_key=api_key, timeout_s=timeout_s, user_agent=user_agent)
        self._clock = clock
        self._cond = threading.Condition()
        self._entries: dict[str, _Entry] = {}

    def check(self, customer_id: str) -> Balance | None:
        """The balance decided on (None: served unchecked, fail-open); raises SpendRefused
        when it says not allowed, UnknownCustomer, BalanceKeyRejected, BalanceUnavailable."""
        balance = self.balance(customer_id)
        if balance is not None and not balance.allowed:
            raise SpendRefused(balance)
        return balance

    def may_spend(self, customer_id: str) -> bool:
        """check() as a yes or no: False when it refuses (SpendRefused, BalanceUnavailable).
        UnknownCustomer and BalanceKeyRejected still raise: they are not about spend."""
        try:
            self.check(customer_id)
        except (SpendRefused, BalanceUnavailable):
            return False
        return True

    def balance(self, customer_id: str) -> Balance | None:
        """The balance to decide on, cached or asked for, or what the failure policy
        makes of no answer (the last known, None, or BalanceUnavailable)."""
        with self._cond:
            while True:
                entry = self._entries.setdefault(customer_id, _Entry())  # again after a 404 forgot it
                now = self._clock()
                if entry.balance is not None and now - entry.received_at < self.ttl_s:
                    return entry.balance
                if not entry.fetching:
                    if now < entry.retry_at:  # tokenledger just gave no answer: do not ask again yet
                        return self._unanswered(customer_id, entry, now)
                    entry.fetching = True
                    break
                seen = entry.answers
                # the request in flight ends within the reader's timeout, once to connect and once to read
                if not self._cond.wait_for(lambda: entry.answers != seen, timeout=2 * self.timeout_s + 1):
                    return self._unanswered(customer_id, entry, self._clock(), why="waited for a request in flight")
                if entry.outcome == "balance":
                    return entry.balance  # it arrived while this check waited: fresh even with ttl_s=0
                if entry.outcome == "unanswered":
                    return self._unanswered(customer_id, entry, self._clock())
                # a 404 or 401/403: ask again, and get that answer first-hand
        return self._fetch(customer_id, entry)

    def _fetch(self, customer_id: str, entry: _Entry) -> Balance | None:
        outcome, balance, unanswered = "error", None, None
        try:
            balance = self.reader.get(customer_id)
            outcome = "balance"
        except Unanswered as exc:
            outcome, unanswered = "unanswered", exc
        finally:  # whatever happened, the waiting checks are woken
            with self._cond:
                now = self._clock()
                entry.fetching, entry.outcome = False, outcome
                entry.answers += 1
                if balance is not None:
                    entry.balance, entry.received_at, entry.retry_at = balance, now, 0.0
                if unanswered is not None:
                    wait_s = unanswered.retry_after_s if unanswered.retry_after_s is not None else self.retry_interval_s
                    entry.why, entry.retry_at = str(unanswered), now + wait_s
                if entry.balance is None and outcome == "error":
                    del self._entries[customer_id]  # unknown customers are not remembered
                self._cond.notify_all()
        if balance is not None:
            return balance
        with self._cond:
            decided = self._unanswered(customer_id, entry, self._clock(), log=True)
        return decided

    def _unanswered(self, customer_id: str, entry: _Entry, now: float, *, why: str = "",
                    log: bool = False) -> Balance | None:
        """The failure policy, for a check that has no fresh balance and cannot ask now."""
        why = why or entry.why
        age_s = now - entry.received_at
        if entry.balance is not None and age_s <= self.stale_max_s:
            decision, result = f"deciding on the balance received {age_s:.1f}s ago", entry.balance
        elif self.fail_open:
            decision, result = "serving unchecked (fail-open)", None
        else:
            decision, result = "refusing (fail-closed)", BalanceUnavailable(
                f"no balance of customer {customer_id} from tokenledger ({why}) and none known "
                f"from the last {self.stale_max_s:g}s")
        if log:  # once per request that got no answer, at most one per retry interval and customer
            logger.warning("no balance of customer %s from tokenledger (%s); %s", customer_id, why, decision)
        if isinstance(result, BalanceUnavailable):
            raise result
        return result
