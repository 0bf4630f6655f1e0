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

HEADER_BYTES = 14  # size int32, api_key int16, api_version int16, correlation_id int32, client_id length int16


class ClientIdProxy:
    def __init__(self, *, prefix: str):
        self.prefix = prefix
        self.upstream: tuple[str, int] | None = None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.refusing = False
        self.refused = 0
        self._lock = threading.Lock()
        self._targeted: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
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
                if targeted:
                    self._targeted |= {client, server}
            server.sendall(head + client_id)
        except OSError:
            _shut(client)
            return
        for source, sink in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._targeted -= {source, sink}
            for end in (source, sink):
                _shut(end)

    def cut(self) -> None:
        with self._lock:
            self.refusing = True
            for end in self._targeted:
                _shut(end)
            self._targeted.clear()

    def resume(self) -> None:
        with self._lock:
            self.refusing = False

    def close(self) -> None:
        self.cut()
        self.listener.close()


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("closed before the request header")
        data += chunk
    return data


def _shut(end: socket.socket) -> None:
    try:
        end.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    end.close()
