"""The metadata fetcher on real sockets: what it refuses, and that it refuses before connecting.

The servers run on 127.0.0.1, which the public-address rule refuses; so the
rule itself is proven with resolvers that return non-public addresses (and
the server proves no connection was made), while HTTP behaviour (redirects,
sizes, timeouts, status codes, TLS) is proven against the real servers
through ``dev_hosts``, which lets named hosts resolve to loopback.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from collections.abc import Sequence
from ipaddress import IPv4Address
from ipaddress import IPv6Address
from ipaddress import ip_address
from typing import Any

import pytest

from pbidentity import PbIdentityError
from pbidentity import __version__
from pbidentity.saml._fetch import FetchedMetadata
from pbidentity.saml._fetch import MetadataFetchError
from pbidentity.saml._fetch import fetch_metadata
from pbidentity.saml._fetch import is_public_address
from tests.saml.fetch_servers import METADATA
from tests.saml.fetch_servers import Exchange
from tests.saml.fetch_servers import Pki
from tests.saml.fetch_servers import Request
from tests.saml.fetch_servers import Server
from tests.saml.fetch_servers import head
from tests.saml.fetch_servers import make_pki

Address = IPv4Address | IPv6Address

#: 0.0.0.0, spelt so it does not read as a server binding to every interface.
UNSPECIFIED = str(IPv4Address(0))

OKTA_HINT = "in Okta, copy the Metadata URL from the Sign On tab"

# (address, public?) — the table behind is_public_address and the refusals.
ADDRESSES: list[tuple[str, bool]] = [
    # IPv4 that is not public
    ("127.0.0.1", False),
    ("127.8.9.10", False),
    ("10.0.0.1", False),
    ("172.16.5.4", False),
    ("172.31.255.255", False),
    ("192.168.1.1", False),
    ("169.254.169.254", False),  # cloud metadata service
    ("169.254.0.1", False),
    ("100.64.0.1", False),  # carrier-grade NAT
    ("100.127.255.254", False),
    (UNSPECIFIED, False),
    ("0.1.2.3", False),
    ("224.0.0.1", False),  # multicast
    ("239.255.255.250", False),
    ("240.0.0.1", False),  # reserved
    ("255.255.255.255", False),
    ("192.0.0.8", False),
    ("192.0.2.1", False),  # documentation
    ("198.51.100.7", False),
    ("203.0.113.9", False),
    ("198.18.0.1", False),  # benchmarking
    ("192.88.99.1", False),  # 6to4 relay anycast
    # IPv6 that is not public
    ("::1", False),
    ("::", False),
    ("fe80::1", False),
    ("fc00::1", False),  # unique-local
    ("fd12:3456::1", False),
    ("fec0::1", False),  # site-local
    ("ff02::1", False),  # multicast
    ("ff0e::1", False),
    ("2001:db8::1", False),  # documentation
    ("3fff::1", False),
    ("100::1", False),  # discard-only
    ("2001::1", False),  # Teredo
    ("64:ff9b:1::a", False),  # local-use NAT64
    # IPv6 forms of a non-public IPv4 address
    ("::ffff:127.0.0.1", False),  # IPv4-mapped
    ("::ffff:169.254.169.254", False),
    ("::ffff:10.0.0.1", False),
    ("::127.0.0.1", False),  # IPv4-compatible
    ("::10.0.0.1", False),
    ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
    ("2002:a9fe:a9fe::1", False),  # 6to4 of 169.254.169.254
    ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
    ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
    # public
    ("8.8.8.8", True),
    ("1.1.1.1", True),
    ("52.84.12.34", True),
    ("100.63.255.255", True),  # just below carrier-grade NAT
    ("2606:4700:4700::1111", True),
    ("2a00:1450:4001:82a::200e", True),
    ("::ffff:8.8.8.8", True),  # the embedded address decides
    ("2002:808:808::1", True),
    ("64:ff9b::808:808", True),
]
NOT_PUBLIC = [address for address, public in ADDRESSES if not public]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA and server certificates, made once for the whole run."""
    return make_pki(tmp_path_factory.mktemp("fetch-pki"))


def _serve(tls: ssl.SSLContext | None) -> Iterator[Server]:
    server = Server(tls)
    server.route("/metadata", answer(200, METADATA, ("Content-Type", "application/xml")))
    try:
        yield server
    finally:
        server.close()
    assert not server.errors, server.errors


@pytest.fixture
def server(pki: Pki) -> Iterator[Server]:
    """An HTTPS server whose certificate the test CA issued for localhost and idp.test."""
    yield from _serve(pki.server_context())


@pytest.fixture
def plain_server() -> Iterator[Server]:
    """An HTTP server (no TLS)."""
    yield from _serve(None)


@pytest.fixture
def expired_server(pki: Pki) -> Iterator[Server]:
    """An HTTPS server whose certificate expired yesterday."""
    yield from _serve(pki.server_context(expired=True))


# ---------------------------------------------------------------- helpers


def answer(status: int, body: bytes = b"", *headers: tuple[str, str]) -> Any:
    """A handler that sends one whole response."""

    def handle(_request: Request, exchange: Exchange) -> None:
        exchange.respond(status, body, headers)

    return handle


def redirect(location: str, status: int = 302) -> Any:
    """A handler that redirects."""
    return answer(status, b"", ("Location", location))


class Resolver:
    """A resolver that answers from a table and records every lookup."""

    def __init__(self, *answers: Sequence[Address], default: Sequence[Address] = ()) -> None:
        self._answers = list(answers)
        self._default = list(default)
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> Sequence[Address]:
        """The next queued answer, then the default one."""
        self.calls.append((host, port))
        if self._answers:
            return self._answers.pop(0)
        return self._default


def loopback() -> Resolver:
    """Every name resolves to 127.0.0.1."""
    return Resolver(default=[IPv4Address("127.0.0.1")])


def never_called(host: str, port: int) -> Sequence[Address]:
    """A resolver for cases refused before any lookup."""
    raise AssertionError(f"looked up {host}:{port}")


def local(pki: Pki, **overrides: Any) -> dict[str, Any]:
    """Arguments for fetching from the local servers: localhost allowed, the test CA trusted."""
    arguments: dict[str, Any] = {
        "dev_hosts": frozenset({"localhost"}),
        "resolve": loopback(),
        "ssl_context": pki.client_context(),
    }
    arguments.update(overrides)
    return arguments


def refused(code: str, url: str, **arguments: Any) -> MetadataFetchError:
    """Fetch, expecting a refusal with ``code`` and a message fit for an admin."""
    with pytest.raises(MetadataFetchError) as caught:
        fetch_metadata(url, **arguments)
    error = caught.value
    assert isinstance(error, PbIdentityError)
    assert error.finding.code == code, error.finding
    assert error.finding.severity == "error"
    assert str(error) == error.finding.message
    message = error.finding.message
    assert message.endswith(".")
    # One sentence: no sentence break inside, no raw exception text.
    assert not re.search(r"[.!?] [A-Z]", message), message
    assert "\n" not in message
    assert "Errno" not in message
    assert "Traceback" not in message
    assert error.__cause__ is None
    return error


def connections_made(server: Server) -> int:
    """The connections the server accepted, counted once it has stopped.

    Stopping first lets it accept whatever the kernel still holds queued, so
    "no connection" cannot be an accept that had not happened yet.
    """
    server.close()
    return server.connections


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port: int = probe.getsockname()[1]
    return port


# ---------------------------------------------------------------- the address rule


@pytest.mark.parametrize(("address", "public"), ADDRESSES)
def test_is_public_address(address: str, public: bool) -> None:
    """Only public addresses pass, embedded IPv4 forms judged by the IPv4 address."""
    assert is_public_address(ip_address(address)) is public


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_name_resolving_to_a_non_public_address_is_refused_before_connecting(
    server: Server, address: str
) -> None:
    """A name resolving to a non-public address is refused; the server sees no connection."""
    resolver = Resolver([ip_address(address)])
    url = f"https://idp.example.com:{server.port}/metadata"
    error = refused("fetch.private_address", url, resolve=resolver)
    assert resolver.calls == [("idp.example.com", server.port)]
    assert connections_made(server) == 0
    # The admin learns the host is refused, not what our DNS answered.
    assert address not in str(error)
    assert "idp.example.com" in str(error)


@pytest.mark.parametrize(
    "answers",
    [
        ["8.8.8.8", "10.0.0.1"],
        ["10.0.0.1", "8.8.8.8"],
        ["52.84.12.34", "169.254.169.254"],
        ["2606:4700:4700::1111", "fd00::1"],
        ["2606:4700:4700::1111", "::ffff:127.0.0.1"],
    ],
)
def test_one_non_public_address_among_public_ones_refuses_the_host(
    server: Server, answers: list[str]
) -> None:
    """One inside address among public ones refuses the host: no cherry-picking the public one."""
    resolver = Resolver([ip_address(a) for a in answers])
    refused("fetch.private_address", f"https://idp.example.com:{server.port}/", resolve=resolver)
    assert connections_made(server) == 0


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "169.254.169.254",
        "[fd00::1]",
        UNSPECIFIED,
    ],
)
def test_address_in_the_url_is_checked_without_a_lookup(server: Server, host: str) -> None:
    """An address written in the URL is checked as it is, without asking the resolver."""
    refused("fetch.private_address", f"https://{host}:{server.port}/metadata", resolve=never_called)
    assert connections_made(server) == 0


@pytest.mark.parametrize(
    "host", ["localhost", "2130706433", "0x7f000001", "127.1", "017700000001", "0x7f.1"]
)
def test_loopback_spellings_resolved_by_the_system_are_refused(server: Server, host: str) -> None:
    """Decimal, hex, octal and short spellings of 127.0.0.1 are refused once resolved."""
    # The default resolver (getaddrinfo) turns these into 127.0.0.1, and the
    # check is on what was resolved, not on how the host was written.
    refused("fetch.private_address", f"https://{host}:{server.port}/metadata")
    assert connections_made(server) == 0


@pytest.mark.parametrize("address", ["169.254.169.254", UNSPECIFIED, "224.0.0.1", "fe80::1"])
def test_dev_host_still_refuses_link_local_and_unroutable_addresses(
    server: Server, pki: Pki, address: str
) -> None:
    """A development host may be loopback or private, never link-local or unroutable."""
    arguments = local(pki, resolve=Resolver(default=[ip_address(address)]))
    refused("fetch.private_address", server.url("/metadata"), **arguments)
    assert connections_made(server) == 0


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.1.2.3", "192.168.0.9", "fd00::9"])
def test_dev_hosts_allow_nothing_for_other_hosts(server: Server, pki: Pki, address: str) -> None:
    """A host not named in dev_hosts gets no development leniency."""
    resolver = Resolver(default=[ip_address(address)])
    url = f"https://idp.test:{server.port}/metadata"
    refused("fetch.private_address", url, resolve=resolver, dev_hosts=frozenset({"localhost"}))
    assert connections_made(server) == 0


# ---------------------------------------------------------------- fetching


def test_fetches_metadata_from_a_dev_host_with_the_system_resolver(
    server: Server, pki: Pki
) -> None:
    """The happy path: the document, its URL and content type, and the request headers sent."""
    fetched = fetch_metadata(
        server.url("/metadata"),
        dev_hosts=frozenset({"localhost"}),
        ssl_context=pki.client_context(),
    )
    assert fetched == FetchedMetadata(
        url=server.url("/metadata"),
        body=METADATA,
        redirects=(),
        content_type="application/xml",
    )
    [request] = server.requests
    assert request.method == "GET"
    assert request.target == "/metadata"
    assert request.headers["host"] == f"localhost:{server.port}"
    assert request.headers["accept"] == "application/samlmetadata+xml, application/xml, text/xml"
    assert request.headers["accept-encoding"] == "identity"
    assert request.headers["user-agent"] == f"pbidentity/{__version__}"
    assert "authorization" not in request.headers
    assert "cookie" not in request.headers


def test_url_is_trimmed_and_its_query_sent(server: Server, pki: Pki) -> None:
    """Whitespace around a pasted URL is dropped, its query string kept, its fragment not sent."""
    url = server.url("/metadata?client_id=0oa1") + "#fragment"
    fetched = fetch_metadata(f"  {url}\n", **local(pki))
    assert fetched.body == METADATA
    assert fetched.url == server.url("/metadata?client_id=0oa1")
    assert server.requests[0].target == "/metadata?client_id=0oa1"


def test_dev_host_names_compare_without_case_or_trailing_dot(server: Server, pki: Pki) -> None:
    """dev_hosts matches host names regardless of case and a trailing dot."""
    arguments = local(pki, dev_hosts=frozenset({"LocalHost."}))
    assert fetch_metadata(server.url("/metadata"), **arguments).body == METADATA


def test_http_is_accepted_for_a_dev_host_only(plain_server: Server, pki: Pki) -> None:
    """Plain http is fetched for a development host and refused, unconnected, for any other."""
    url = plain_server.url("/metadata")
    assert fetch_metadata(url, **local(pki)).body == METADATA
    assert plain_server.connections == 1

    error = refused("fetch.not_https", url, resolve=never_called)
    assert "https://" in str(error)
    assert connections_made(plain_server) == 1


def test_connection_is_pinned_to_the_checked_address(server: Server, pki: Pki) -> None:
    """The connection goes to the address that was checked, with SNI and Host for the name."""
    # The second answer would be refused, and idp.test does not resolve at
    # all outside this resolver: the fetch succeeds only if it connects to
    # the address it checked, without looking the name up again.
    resolver = Resolver([IPv4Address("127.0.0.1")], [IPv4Address("169.254.169.254")])
    url = f"https://idp.test:{server.port}/metadata"
    arguments = local(pki, resolve=resolver, dev_hosts=frozenset({"idp.test"}))
    assert fetch_metadata(url, **arguments).body == METADATA
    assert resolver.calls == [("idp.test", server.port)]
    # TLS was for the name (SNI, certificate), HTTP for the name (Host).
    assert server.sni == ["idp.test"]
    assert server.requests[0].headers["host"] == f"idp.test:{server.port}"


def test_next_checked_address_is_tried_when_one_refuses(server: Server, pki: Pki) -> None:
    """When one checked address refuses, the next checked one is used, with no new lookup."""
    # Nothing listens on 127.0.0.2; both addresses were checked.
    resolver = Resolver(default=[IPv4Address("127.0.0.2"), IPv4Address("127.0.0.1")])
    fetched = fetch_metadata(server.url("/metadata"), **local(pki, resolve=resolver))
    assert fetched.body == METADATA
    assert len(resolver.calls) == 1


# ---------------------------------------------------------------- redirects


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("absolute", [True, False], ids=["absolute", "relative"])
def test_redirect_is_followed(server: Server, pki: Pki, status: int, absolute: bool) -> None:
    """Each redirect status is followed, to absolute and relative locations."""
    location = server.url("/metadata") if absolute else "/metadata"
    server.route("/start", redirect(location, status))
    fetched = fetch_metadata(server.url("/start"), **local(pki))
    assert fetched.body == METADATA
    assert fetched.url == server.url("/metadata")
    assert fetched.redirects == (server.url("/start"),)
    assert [r.path for r in server.requests] == ["/start", "/metadata"]


def _chain(server: Server, length: int) -> str:
    for hop in range(length, 0, -1):
        server.route(f"/hop/{hop}", redirect(f"/hop/{hop - 1}"))
    server.route("/hop/0", answer(200, METADATA))
    return server.url(f"/hop/{length}")


def test_three_redirects_are_followed(server: Server, pki: Pki) -> None:
    """A chain of three redirects is within the default limit."""
    fetched = fetch_metadata(_chain(server, 3), **local(pki))
    assert fetched.body == METADATA
    assert fetched.url == server.url("/hop/0")
    assert fetched.redirects == tuple(server.url(f"/hop/{n}") for n in (3, 2, 1))


def test_a_fourth_redirect_is_refused(server: Server, pki: Pki) -> None:
    """The fourth redirect is refused without being followed."""
    error = refused("fetch.too_many_redirects", _chain(server, 4), **local(pki))
    assert "more than 3" in str(error)
    assert error.finding.where == "redirect 4"
    # The fourth redirect was received, not followed.
    assert [r.path for r in server.requests] == ["/hop/4", "/hop/3", "/hop/2", "/hop/1"]


def test_max_redirects_zero_refuses_any_redirect(server: Server, pki: Pki) -> None:
    """max_redirects=0 refuses the first redirect."""
    refused("fetch.too_many_redirects", _chain(server, 1), max_redirects=0, **local(pki))
    assert len(server.requests) == 1


def test_redirect_to_the_metadata_service_is_refused(server: Server, pki: Pki) -> None:
    """A redirect from an allowed host to 169.254.169.254 is refused, naming the hop."""
    target = "https://169.254.169.254/latest/meta-data/"
    server.route("/start", redirect(target))
    error = refused("fetch.private_address", server.url("/start"), **local(pki))
    assert f"redirected (hop 1) to {target}" in str(error)
    assert error.finding.where == "redirect 1"
    assert connections_made(server) == 1


def test_redirect_to_a_name_resolving_inside_is_refused(server: Server, pki: Pki) -> None:
    """A redirect target is looked up and checked again."""
    server.route("/start", redirect("https://internal.example/saml"))
    resolver = Resolver([IPv4Address("127.0.0.1")], [IPv4Address("10.0.0.7")])
    error = refused("fetch.private_address", server.url("/start"), **local(pki, resolve=resolver))
    # Each hop is looked up and checked again.
    assert [host for host, _ in resolver.calls] == ["localhost", "internal.example"]
    assert "https://internal.example/saml" in str(error)
    assert connections_made(server) == 1


@pytest.mark.parametrize(
    "location",
    [
        "http://localhost:{port}/metadata",  # leaves https even on a dev host
        "http://idp.example.com/metadata",
    ],
)
def test_redirect_to_http_is_refused(server: Server, pki: Pki, location: str) -> None:
    """A redirect to http is refused, naming the hop, even to a development host."""
    target = location.format(port=server.port)
    server.route("/start", redirect(target))
    error = refused("fetch.not_https", server.url("/start"), **local(pki))
    assert f"redirected (hop 1) to {target}" in str(error)
    assert error.finding.where == "redirect 1"
    assert connections_made(server) == 1


@pytest.mark.parametrize(
    "location", ["file:///etc/passwd", "gopher://idp.example.com/", "ftp://idp.example.com/x"]
)
def test_redirect_to_another_scheme_is_refused(server: Server, pki: Pki, location: str) -> None:
    """A redirect to file:, gopher: or ftp: is refused."""
    server.route("/start", redirect(location))
    refused("fetch.not_https", server.url("/start"), **local(pki))
    assert connections_made(server) == 1


def test_redirect_without_location_is_refused(server: Server, pki: Pki) -> None:
    """A redirect status without a Location header is reported as a bad status."""
    server.route("/start", answer(302))
    error = refused("fetch.status", server.url("/start"), **local(pki))
    assert "302" in str(error)


# ---------------------------------------------------------------- time


def test_slow_server_times_out_fast(server: Server, pki: Pki) -> None:
    """A server that never answers is given up on after the read timeout."""

    def stall(_request: Request, exchange: Exchange) -> None:
        exchange.wait(5)

    server.route("/slow", stall)
    started = time.monotonic()
    error = refused("fetch.timeout", server.url("/slow"), timeout=0.2, **local(pki))
    assert time.monotonic() - started < 1.0
    assert "localhost" in str(error)


@pytest.mark.parametrize("part", ["headers", "body"])
def test_trickling_server_hits_the_overall_deadline(server: Server, pki: Pki, part: str) -> None:
    """A server trickling bytes slower than the deadline allows is cut off, in headers or body."""

    # A byte every 10 ms never trips the 250 ms read timeout; the deadline
    # (three times the timeout) ends it all the same.
    def trickle(_request: Request, exchange: Exchange) -> None:
        if part == "headers":
            exchange.send(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        else:
            exchange.send(head(200, [("Content-Length", "100000")]))
        while not exchange.wait(0.01):
            exchange.send(b"a")

    server.route("/trickle", trickle)
    started = time.monotonic()
    error = refused("fetch.timeout", server.url("/trickle"), timeout=0.25, **local(pki))
    assert time.monotonic() - started < 2.0
    assert "0.75 seconds in all" in str(error)


def test_slow_name_server_times_out(server: Server) -> None:
    """A lookup that does not come back in time is given up on."""
    release = threading.Event()

    def hang(_host: str, _port: int) -> Sequence[Address]:
        release.wait(5)
        return [IPv4Address("8.8.8.8")]

    started = time.monotonic()
    try:
        refused("fetch.dns", "https://idp.example.com/metadata", timeout=0.2, resolve=hang)
    finally:
        release.set()
    assert time.monotonic() - started < 1.0


# ---------------------------------------------------------------- size


def test_declared_oversize_body_is_refused_unread(server: Server, pki: Pki) -> None:
    """A Content-Length over the cap is refused before any of the body is read."""

    def huge(_request: Request, exchange: Exchange) -> None:
        exchange.send(head(200, [("Content-Length", str(2 * 1024 * 1024))]))
        exchange.server.notes["hung up"] = exchange.client_hung_up(2)

    server.route("/huge", huge)
    error = refused("fetch.too_large", server.url("/huge"), **local(pki))
    assert "2097152 bytes" in str(error)
    server.close()  # wait for the handler's verdict
    assert server.notes["hung up"] is True


def test_chunked_oversize_body_is_refused_after_the_cap(server: Server, pki: Pki) -> None:
    """A chunked body is read only to just past the cap, then the connection is dropped."""

    # The server sends 1.125 MB of a 2 MB chunked body and then waits: the
    # fetcher must hang up having read just past the cap, not wait for more.
    def huge(_request: Request, exchange: Exchange) -> None:
        chunk = b"x" * 65_536
        try:
            exchange.send(head(200, [("Transfer-Encoding", "chunked")]))
            for _ in range(18):
                exchange.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:  # it hung up while we were still sending
            exchange.server.notes["hung up"] = True
        else:
            exchange.server.notes["hung up"] = exchange.client_hung_up(2)

    server.route("/huge", huge)
    started = time.monotonic()
    refused("fetch.too_large", server.url("/huge"), **local(pki))
    assert time.monotonic() - started < 1.5
    server.close()  # wait for the handler's verdict
    assert server.notes["hung up"] is True


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
@pytest.mark.parametrize(("size", "accepted"), [(1000, True), (1001, False)])
def test_size_cap_is_exact(
    server: Server, pki: Pki, framing: str, size: int, accepted: bool
) -> None:
    """A body of exactly max_bytes passes and one byte more does not, however it is framed."""
    body = b"<" + b"x" * (size - 1)

    def send(_request: Request, exchange: Exchange) -> None:
        if framing == "length":
            exchange.respond(200, body)
        elif framing == "chunked":
            exchange.send(head(200, [("Transfer-Encoding", "chunked")]))
            exchange.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        else:  # no length: the body ends when the connection does
            exchange.send(head(200, [("Connection", "close")]) + body)

    server.route("/sized", send)
    if accepted:
        assert fetch_metadata(server.url("/sized"), max_bytes=1000, **local(pki)).body == body
    else:
        refused("fetch.too_large", server.url("/sized"), max_bytes=1000, **local(pki))


def test_compressed_body_is_refused(server: Server, pki: Pki) -> None:
    """A compressed body (never asked for) is refused rather than decompressed past the cap."""
    server.route("/gzip", answer(200, b"\x1f\x8b...", ("Content-Encoding", "gzip")))
    refused("fetch.encoding", server.url("/gzip"), **local(pki))


# ---------------------------------------------------------------- status and body


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (401, OKTA_HINT),
        (403, OKTA_HINT),
        (404, "copied whole"),
        (410, "copied whole"),
        (500, "try again later"),
        (503, "try again later"),
        (204, "exactly as the identity provider shows it"),
        (304, "exactly as the identity provider shows it"),
        (299, "exactly as the identity provider shows it"),
    ],
)
def test_status_other_than_200_is_refused_with_a_hint(
    server: Server, pki: Pki, status: int, hint: str
) -> None:
    """Any status but 200 is refused with the status and what to do about it."""
    server.route("/status", answer(status, b"<html>no</html>" if status not in {204, 304} else b""))
    error = refused("fetch.status", server.url("/status"), **local(pki))
    assert f"HTTP {status}" in str(error)
    assert hint in str(error)
    if status in {401, 403}:
        assert "the metadata URL needs to be public" in str(error)


@pytest.mark.parametrize("body", [b"", b"  \r\n\t "])
def test_empty_body_is_refused(server: Server, pki: Pki, body: bytes) -> None:
    """A 200 with an empty (or blank) body is refused."""
    server.route("/empty", answer(200, body))
    refused("fetch.empty", server.url("/empty"), **local(pki))


def test_garbage_instead_of_http_is_refused(server: Server, pki: Pki) -> None:
    """A server that does not speak HTTP is reported as such."""

    def garbage(_request: Request, exchange: Exchange) -> None:
        exchange.send(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")

    server.route("/garbage", garbage)
    refused("fetch.protocol", server.url("/garbage"), **local(pki))


# ---------------------------------------------------------------- TLS


def test_certificate_for_another_name_is_refused(server: Server, pki: Pki) -> None:
    """A certificate that does not name the host is refused before any request."""
    url = f"https://wrong.test:{server.port}/metadata"
    error = refused("fetch.tls", url, **local(pki, dev_hosts=frozenset({"wrong.test"})))
    assert "wrong.test" in str(error)
    assert "another name" in str(error)
    server.close()  # the server notices the failed handshake after the client does
    assert server.tls_failures == 1
    assert server.requests == []


def test_untrusted_certificate_is_refused(server: Server) -> None:
    """A certificate from an untrusted authority is refused."""
    # The default context trusts the public authorities, not the test CA.
    error = refused(
        "fetch.tls",
        server.url("/metadata"),
        dev_hosts=frozenset({"localhost"}),
        resolve=loopback(),
    )
    assert "not trusted" in str(error)
    assert server.requests == []


def test_expired_certificate_is_refused(expired_server: Server, pki: Pki) -> None:
    """An expired certificate is refused, and said to be expired."""
    error = refused("fetch.tls", expired_server.url("/metadata"), **local(pki))
    assert "expired" in str(error)
    assert expired_server.requests == []


def test_https_to_a_plain_http_server_is_a_tls_failure(pki: Pki) -> None:
    """An https URL to a server without TLS is a TLS failure."""
    # What a plain HTTP server answers to a TLS greeting.
    with Server(greeting=b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n") as plain:
        url = f"https://localhost:{plain.port}/metadata"
        error = refused("fetch.tls", url, **local(pki))
    assert "TLS" in str(error)


# ---------------------------------------------------------------- lookups and connections


def test_unknown_host_is_reported(server: Server) -> None:
    """A host name that does not resolve is reported with the name."""

    def unknown(host: str, port: int) -> Sequence[Address]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    error = refused("fetch.dns", "https://idp.exmaple.com/metadata", resolve=unknown)
    assert "idp.exmaple.com" in str(error)


def test_host_without_addresses_is_reported() -> None:
    """A lookup that returns no address is reported like an unknown host."""
    refused("fetch.dns", "https://idp.example.com/metadata", resolve=Resolver())


def test_refused_connection_is_reported(pki: Pki) -> None:
    """A refused connection is reported with the host and port."""
    port = closed_port()
    error = refused("fetch.connect", f"https://localhost:{port}/metadata", **local(pki))
    assert str(port) in str(error)


# ---------------------------------------------------------------- the URL itself


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("file:///etc/passwd", "fetch.not_https"),
        ("ftp://idp.example.com/metadata.xml", "fetch.not_https"),
        ("gopher://idp.example.com:70/_GET", "fetch.not_https"),
        ("data:text/xml,<EntityDescriptor/>", "fetch.not_https"),
        ("javascript:alert(1)", "fetch.not_https"),
        ("http://idp.example.com/metadata", "fetch.not_https"),
        ("HTTP://idp.example.com/metadata", "fetch.not_https"),
        ("idp.example.com/metadata", "fetch.invalid_url"),
        ("idp.example.com:443/metadata", "fetch.invalid_url"),
        ("", "fetch.invalid_url"),
        ("https://user:secret@idp.example.com/metadata", "fetch.invalid_url"),
        ("https://user@idp.example.com/metadata", "fetch.invalid_url"),
        ("https:///metadata", "fetch.invalid_url"),
        ("https://idp.example.com:99999/metadata", "fetch.invalid_url"),
        ("https://idp.example.com:port/metadata", "fetch.invalid_url"),
        ("https://a..b/metadata", "fetch.invalid_url"),
        (f"https://{'a' * 64}.example.com/metadata", "fetch.invalid_url"),
        ("https://exa mple.com/metadata", "fetch.invalid_url"),
        ("https://%31%32%37.0.0.1/metadata", "fetch.invalid_url"),
        ("https://[::1/metadata", "fetch.invalid_url"),
    ],
)
def test_url_refused_before_any_lookup(url: str, code: str) -> None:
    """Other schemes, http, credentials and malformed URLs are refused before any lookup."""
    error = refused(code, url, resolve=never_called)
    assert error.finding.where == "metadata URL"
    if code == "fetch.not_https":
        assert "https://" in str(error)


def test_international_host_name_is_looked_up_in_ascii() -> None:
    """An internationalised host name is looked up in its IDNA (ASCII) form."""
    resolver = Resolver([IPv4Address("10.0.0.1")])
    refused("fetch.private_address", "https://bücher.test/metadata", resolve=resolver)
    assert resolver.calls == [("xn--bcher-kva.test", 443)]


@pytest.mark.parametrize("arguments", [{"timeout": 0}, {"max_bytes": 0}, {"max_redirects": -1}])
def test_nonsense_limits_are_a_programming_error(arguments: dict[str, Any]) -> None:
    """Non-positive limits are the caller's bug, not an admin's fetch failure."""
    with pytest.raises(ValueError, match="positive"):
        fetch_metadata("https://idp.example.com/", resolve=never_called, **arguments)
