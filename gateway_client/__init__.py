"""The gateway client of tokenledger: an inference gateway records each served
request with `UsageClient.record()`; the client batches the events per customer onto
the Kafka topic, falls back to the REST API when Kafka cannot be reached, and keeps a
bounded buffer of what neither accepted yet. No Django: a gateway is not a Django app.
"""

from gateway_client.client import BufferFull, ClientClosed, ClientStats, UsageClient
from gateway_client.events import InvalidEvent

__all__ = ["BufferFull", "ClientClosed", "ClientStats", "InvalidEvent", "UsageClient"]
