"""The gateway client of tokenledger: an inference gateway records each served
request with `UsageClient.record()`; the client batches the events per customer onto
the Kafka topic, falls back to the REST API when Kafka cannot be reached, and keeps a
bounded buffer of what neither accepted yet. Before serving, `UsageClient.check_spend()`
(a `BalanceCache`) refuses a customer whose balance says `allowed: false`, from a balance
cached a few seconds. No Django: a gateway is not a Django app.
"""

from gateway_client.balance import (
    Balance, BalanceCache, BalanceError, BalanceKeyRejected, BalanceUnavailable, SpendRefused, UnknownCustomer,
)
from gateway_client.client import BufferFull, ClientClosed, ClientStats, UsageClient
from gateway_client.events import InvalidEvent

__all__ = ["Balance", "BalanceCache", "BalanceError", "BalanceKeyRejected", "BalanceUnavailable", "BufferFull",
           "ClientClosed", "ClientStats", "InvalidEvent", "SpendRefused", "UnknownCustomer", "UsageClient"]
