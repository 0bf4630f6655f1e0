"""A TCP proxy a test runs in-process, to make a service go away for one client only."""

import socket
import threading


class TcpProxy:
    """Forwards 127.0.0.1:<port> to `upstream`. `cut()` drops every connection and refuses
    new ones (accepted, then closed at once) until `resume()`: to the client behind it,
    the server went away, as a Postgres restart looks, while other clients of the same
    server carry on."""

    def __init__(self, upstream: tuple[str, int] | None):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.refusing = False
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # the listener was closed
                return
            self._serve(client)

    def _serve(self, client: socket.socket) -> None:
        """Connect `client` upstream (or refuse it while cut) and pump both ways."""
        try:
            if self.refusing:
                raise ConnectionRefusedError
            server = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        with self._lock:
            self._open |= {client, server}
        self._pump_both(client, server)

    def _pump_both(self, client: socket.socket, server: socket.socket) -> None:
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
                self._open -= {source, sink}
            for end in (source, sink):
                shut(end)

    def cut(self) -> None:
        with self._lock:
            self.refusing = True
            for end in self._open:
                shut(end)
            self._open.clear()

    def resume(self) -> None:
        with self._lock:
            self.refusing = False

    def close(self) -> None:
        self.cut()
        self.listener.close()


def shut(end: socket.socket) -> None:
    try:
        end.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    end.close()
