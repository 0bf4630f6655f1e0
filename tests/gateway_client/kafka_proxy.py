"""A TCP proxy in front of a broker that cuts one Kafka client only.

A Kafka client reconnects to the address the broker advertises, so the gateway tests
run a broker of their own advertised at this proxy, and every client (the gateway
client, the REST API's producer, the ledger consumer) goes through it. `cut()` drops
and refuses only the connections whose first request names a client_id starting with
`prefix`: to the gateway client the broker went away, while the REST fallback and the
consumer keep working, as when a gateway loses its own route to Kafka.
"""

import socket
import struct
import threading

from tests.metering.tcp_proxy import TcpProxy, shut

HEADER_BYTES = 14  # size int32, api_key int16, api_version int16, correlation_id int32, client_id length int16


class ClientIdProxy(TcpProxy):
    """A TcpProxy whose `cut()` reaches only the clients named by `prefix`; `upstream` is
    set once the broker behind it has started (it must advertise this proxy's port)."""

    def __init__(self, *, prefix: str):
        self.prefix = prefix
        self.refused = 0
        super().__init__(upstream=None)

    def _accept(self) -> None:  # each connection's first request is read before it is routed
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            head = _recv_exactly(client, HEADER_BYTES)
            (id_length,) = struct.unpack(">h", head[12:14])
            client_id = _recv_exactly(client, max(id_length, 0))
            targeted = client_id.decode(errors="replace").startswith(self.prefix)
            with self._lock:
                if targeted and self.refusing:
                    self.refused += 1
                    raise ConnectionRefusedError
                server = socket.create_connection(self.upstream)
                if targeted:  # only these are cut
                    self._open |= {client, server}
            server.sendall(head + client_id)
        except OSError:
            shut(client)
            return
        self._pump_both(client, server)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("closed before the request header")
        data += chunk
    return data
