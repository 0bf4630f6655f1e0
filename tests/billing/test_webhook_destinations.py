"""Webhooks go to public HTTPS addresses only: refused at registration (REST, admin) and,
after DNS, at delivery, where nothing is sent to a refused destination and it is not
retried; redirects are not followed; the connection goes to the vetted address with the
host name kept for the Host header, SNI and the certificate check."""

import socket
import ssl
import subprocess
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.urls import reverse

from billing.models import WebhookDelivery, WebhookEndpoint
from billing.services.webhook_destinations import Destination, webhook_post
from billing.services.webhooks import webhook_deliver
from billing.tasks import webhook_deliver_task

pytestmark = pytest.mark.django_db
AS_OF = datetime(2026, 11, 2, 6, tzinfo=UTC)

REFUSED = [
    "http://hooks.example.com/tl",  # not https
    "https://localhost/hooks", "https://billing.localhost./hooks",
    "https://127.0.0.1/hooks", "https://127.1/hooks", "https://2130706433/hooks", "https://0x7f000001/hooks",
    "https://10.1.2.3/hooks", "https://172.16.0.9/hooks", "https://192.168.1.10/hooks",  # private
    "https://169.254.169.254/latest/meta-data/", "https://100.64.0.1/hooks",  # link-local (metadata), CGNAT
    "https://0.0.0.0/hooks", "https://224.0.0.251/hooks", "https://240.0.0.1/hooks", "https://255.255.255.255/",
    "https://[::1]/hooks", "https://[::]/hooks", "https://[fd00::1]/hooks", "https://[fe80::1]/hooks",
    "https://[ff02::1]/hooks", "https://[::ffff:127.0.0.1]/hooks", "https://[::ffff:a9fe:a9fe]/hooks",
    "https://[64:ff9b::a9fe:a9fe]/hooks", "https://[2002:c0a8:0101::1]/hooks",  # NAT64, 6to4 of private
]
ACCEPTED = ["https://hooks.example.com/tl", "https://93.184.215.14:8443/hooks?tenant=7",
            "https://[2606:4700::1111]/hooks", "https://[::ffff:8.8.8.8]/hooks"]


def register(client, url: str):
    return client.post("/api/v1/webhook-endpoints", {"url": url, "secret": "s" * 24}, format="json")


@pytest.mark.parametrize("url", REFUSED)
def test_registration_refuses_anything_but_https_to_a_public_host(api_client_for, url):
    response = register(api_client_for("admin"), url)

    assert response.status_code == 422, response.json()
    assert "url" in response.json()["errors"]
    assert not WebhookEndpoint.objects.filter(url=url).exists()


@pytest.mark.parametrize("url", ACCEPTED)
def test_registration_accepts_https_to_public_hosts(api_client_for, url):
    assert register(api_client_for("admin"), url).status_code == 201


def test_a_patch_to_a_private_address_is_refused_too(api_client_for):
    admin = api_client_for("admin")
    endpoint_id = register(admin, "https://hooks.example.com/tl").json()["id"]

    response = admin.patch(f"/api/v1/webhook-endpoints/{endpoint_id}",
                           {"url": "https://169.254.169.254/latest/meta-data/"}, format="json")

    assert response.status_code == 422 and "url" in response.json()["errors"]
    assert WebhookEndpoint.objects.get(pk=endpoint_id).url == "https://hooks.example.com/tl"


def test_local_urls_are_accepted_when_private_urls_are_allowed(api_client_for, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True

    assert register(api_client_for("admin"), "http://127.0.0.1:8099/hooks").status_code == 201


def test_the_admin_form_refuses_a_metadata_address(root):
    response = root.post(reverse("admin:billing_webhookendpoint_add"),
                         {"url": "https://169.254.169.254/latest/meta-data/", "active": "on", "secret": "s" * 24})

    assert response.status_code == 200  # the form again, with the error
    assert "link-local" in str(response.context["adminform"].form.errors["url"])
    assert not WebhookEndpoint.objects.exists()


# --- at delivery ------------------------------------------------------------------------


class Listener:
    """A real TCP listener on 127.0.0.1 that counts the connections it is offered."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port, self.accepted = self.sock.getsockname()[1], 0
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> int:
        time.sleep(0.3)
        self.stop.set()
        self.thread.join()
        self.sock.close()
        return self.accepted


class Recorder(BaseHTTPRequestHandler):
    """Records each request; answers with `reply` (a status, and a Location for 3xx)."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((dict(self.headers), body))
        status, location = self.server.reply
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    servers = []

    def start(reply=(200, None), tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
        server.requests, server.reply = [], reply
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()


def delivery_to(url: str) -> WebhookDelivery:
    endpoint = WebhookEndpoint.objects.create(url=url, secret="s" * 24)  # as if registered before
    return WebhookDelivery.objects.create(endpoint=endpoint, event="invoice.finalized", created_at=AS_OF,
                                          payload={"type": "invoice.finalized", "data": {}})


def test_a_name_resolving_to_loopback_is_refused_at_delivery_and_never_contacted():
    listener = Listener()
    delivery = delivery_to(f"https://localhost:{listener.port}/hooks")

    status = webhook_deliver(delivery_id=delivery.pk, as_of=AS_OF)
    again = webhook_deliver_task.apply(kwargs={"delivery_id": delivery.pk}).get()  # the task: no retry

    assert listener.close() == 0
    assert (status, again) == ("refused", False)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("refused", 1, None)
    assert delivery.last_error.startswith("refused: localhost resolves to ")
    assert "a loopback address" in delivery.last_error


def test_an_endpoint_registered_as_http_is_refused_at_delivery():
    listener = Listener()
    delivery = delivery_to(f"http://hooks.example.com:{listener.port}/hooks")

    assert webhook_deliver(delivery_id=delivery.pk, as_of=AS_OF) == "refused"

    assert listener.close() == 0
    delivery.refresh_from_db()
    assert delivery.last_error == "refused: Webhook URLs must use https://."


def test_local_deliveries_go_through_when_allowed_with_the_host_header_kept(http_server, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    server = http_server()
    delivery = delivery_to(f"http://localhost:{server.server_address[1]}/hooks?tenant=7")

    status = webhook_deliver(delivery_id=delivery.pk, as_of=AS_OF)

    assert status == "delivered"
    [(headers, body)] = server.requests
    assert headers["Host"] == f"localhost:{server.server_address[1]}"
    assert body.startswith(b'{"id":%d' % delivery.pk)


def test_redirects_are_not_followed(http_server, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    listener = Listener()
    server = http_server(reply=(302, f"http://127.0.0.1:{listener.port}/elsewhere"))
    delivery = delivery_to(f"http://127.0.0.1:{server.server_address[1]}/hooks")

    status = webhook_deliver(delivery_id=delivery.pk, as_of=AS_OF)

    assert status == "pending" and len(server.requests) == 1
    assert listener.close() == 0
    delivery.refresh_from_db()
    assert (delivery.last_status_code, delivery.last_error) == (302, "HTTP 302 (redirects are not followed)")


def test_the_connection_goes_to_the_vetted_address_under_the_host_name(http_server):
    server = http_server()
    port = server.server_address[1]

    status = webhook_post(Destination(scheme="http", host="hooks.example.com", port=port, target="/hooks",
                                      addresses=("127.0.0.1",)), body=b"{}", headers={}, timeout=5)

    assert status == 200
    assert server.requests[0][0]["Host"] == f"hooks.example.com:{port}"  # no second lookup of the name


@pytest.fixture
def tls_for_localhost(tmp_path):
    """A self-signed certificate for `localhost`; the server context records the SNI it is sent."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    server.names = []
    server.sni_callback = lambda sock, name, context: server.names.append(name)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


def test_tls_keeps_sni_and_certificate_checks_on_the_host_name(http_server, tls_for_localhost, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    server_tls, trusting = tls_for_localhost
    server = http_server(tls=server_tls)
    port = server.server_address[1]
    delivery = delivery_to(f"https://localhost:{port}/hooks")

    untrusted = webhook_deliver(delivery_id=delivery.pk, as_of=AS_OF)  # self-signed: the default context says no
    trusted = webhook_post(Destination(scheme="https", host="localhost", port=port, target="/hooks",
                                       addresses=("127.0.0.1",)), body=b"{}", headers={}, timeout=5,
                           context=trusting)

    delivery.refresh_from_db()
    assert untrusted == "pending" and "CERTIFICATE_VERIFY_FAILED" in delivery.last_error
    assert trusted == 200
    assert server_tls.names[:2] == ["localhost", "localhost"]
    assert server.requests[0][0]["Host"] == f"localhost:{port}"
