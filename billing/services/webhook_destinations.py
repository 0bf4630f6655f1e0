"""Where a webhook may be sent: https:// to public addresses only, so that an endpoint
cannot point deliveries at the loopback interface, the private network or a cloud
metadata service (169.254.169.254) from inside it.

Checked twice. At registration (`webhook_url_check`, REST and admin) the scheme, names of
the loopback (`localhost`, `*.localhost`) and literal addresses, in every spelling the
resolver accepts (`127.1`, `0x7f000001`, `[::ffff:127.0.0.1]`); no DNS lookup there, since
a name may legitimately resolve later, and what it resolves to can change anyway. At
delivery (`webhook_destination`) the host, whatever its name, is resolved and refused if
ANY of its addresses is not public; the request then goes to a vetted address
(`PinnedHTTPSConnection`), never to a second lookup, so a name cannot rebind to a private
address between the check and the connection, while the Host header, SNI and the
certificate check still use the name.
Redirects are never followed (http.client does not follow them): a 3xx is a failed attempt.

Deliveries do not go through HTTP(S)_PROXY: an egress proxy, if one is required, would
have to do this filtering itself. WEBHOOK_ALLOW_PRIVATE_URLS=1 (development and tests
only) turns every check off.
"""

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class WebhookUrlRefused(ValueError):
    """The URL, or an address its host resolves to, is not a public HTTPS destination."""


def address_refusal(address: Address) -> str | None:
    """Why deliveries may not go to this address, or None if it is public. An IPv6 address
    that carries an IPv4 one (mapped, NAT64, 6to4, Teredo) is judged by the IPv4 address."""
    if address.version == 6:
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
        if embedded is not None:
            return address_refusal(embedded)
    for kind, flag in (("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
                       ("link-local", address.is_link_local), ("multicast", address.is_multicast),
                       ("private", address.is_private), ("reserved", address.is_reserved),
                       ("site-local", getattr(address, "is_site_local", False))):
        if flag:
            return f"a {kind} address"
    if address.version == 4 and address in ipaddress.ip_network("100.64.0.0/10"):
        return "a shared (carrier-grade NAT) address"
    if not address.is_global:
        return "not a globally routable address"
    return None


def literal_address(host: str) -> Address | None:
    """The address a host names literally, as the resolver would read it: dotted quads,
    but also the shorthand, hexadecimal and octal forms inet_aton accepts."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def webhook_url_check(url: str) -> None:
    """At registration: raise WebhookUrlRefused unless the URL is https:// to a host that is
    not a loopback name or a non-public literal address."""
    if settings.WEBHOOK_ALLOW_PRIVATE_URLS:
        return
    host = _https_host(url)
    if host == "localhost" or host.endswith(".localhost"):
        raise WebhookUrlRefused(f"{host} names the loopback interface.")
    address = literal_address(host)
    if address is not None and (reason := address_refusal(address)):
        raise WebhookUrlRefused(f"{host} is {reason}; webhooks go to public addresses only.")


def _https_host(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        raise WebhookUrlRefused("Webhook URLs must use https://.")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise WebhookUrlRefused("Webhook URLs must name a host.")
    return host


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent on the request line
    addresses: tuple[str, ...]  # vetted; connections go to these and nowhere else


def webhook_destination(url: str) -> Destination:
    """At delivery: https only; resolve the host and refuse (WebhookUrlRefused) if any of its
    addresses is not public, whatever the name (`localhost` included) or spelling. DNS
    failures raise OSError, to be retried."""
    allow_private = settings.WEBHOOK_ALLOW_PRIVATE_URLS
    if not allow_private:
        _https_host(url)
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    addresses = tuple(dict.fromkeys(
        info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))
    if not allow_private:
        for address in addresses:
            if reason := address_refusal(ipaddress.ip_address(address.split("%", 1)[0])):
                raise WebhookUrlRefused(f"{host} resolves to {address}, {reason}; webhooks go to public "
                                        "addresses only.")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Destination(scheme=scheme, host=host, port=port, target=target, addresses=addresses)


def _connect_first(addresses: tuple[str, ...], port: int, timeout: float) -> socket.socket:
    error: OSError = OSError("no address to connect to")
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout=timeout)
        except OSError as exc:
            error = exc
    raise error


class PinnedHTTPConnection(http.client.HTTPConnection):
    """Plain HTTP to vetted addresses (only ever used with WEBHOOK_ALLOW_PRIVATE_URLS)."""

    def __init__(self, destination: Destination, *, timeout: float):
        super().__init__(destination.host, destination.port, timeout=timeout)
        self.addresses = destination.addresses

    def connect(self):
        self.sock = _connect_first(self.addresses, self.port, self.timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to vetted addresses; SNI and certificate verification use the host name."""

    def __init__(self, destination: Destination, *, timeout: float, context: ssl.SSLContext | None = None):
        super().__init__(destination.host, destination.port, timeout=timeout,
                         context=context or ssl.create_default_context())
        self.addresses = destination.addresses

    def connect(self):
        sock = _connect_first(self.addresses, self.port, self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def webhook_post(destination: Destination, *, body: bytes, headers: dict, timeout: float,
                 context: ssl.SSLContext | None = None) -> int:
    """POST once; the response status (a redirect is returned, not followed)."""
    connection = (PinnedHTTPSConnection(destination, timeout=timeout, context=context)
                  if destination.scheme == "https" else PinnedHTTPConnection(destination, timeout=timeout))
    try:
        connection.request("POST", destination.target, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()
