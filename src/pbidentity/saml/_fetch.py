"""Fetching a tenant's IdP metadata from the URL its admin pasted, without opening an SSRF hole.

The URL comes from a tenant admin and is fetched from inside our network, so
it is treated as hostile: https only, every address the host resolves to must
be public (re-checked after each redirect), and the connection goes to the
very address that was checked, so a DNS answer that changes between the check
and the connection (DNS rebinding) cannot reach anything else. Time and size
are bounded, and every failure becomes a :class:`MetadataFetchError` whose
message tells the admin what to do.

Only the standard library is used: ``http.client`` over a socket this module
connects itself. No proxy settings from the environment are honoured, since a
proxy would make the address check meaningless.
"""

from __future__ import annotations

import contextlib
import http
import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from collections.abc import Sequence

import attrs

from pbidentity import __version__
from pbidentity.exceptions import PbIdentityError
from pbidentity.saml._types import Finding

__all__ = [
    "FetchedMetadata",
    "MetadataFetchError",
    "fetch_metadata",
    "is_public_address",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[Address]]

#: The whole fetch, redirects included, may take this many times ``timeout``:
#: the per-operation timeout alone lets a server that sends one byte at a time
#: hold the request open for ever.
_DEADLINE_FACTOR = 3

_READ_CHUNK = 65_536

_REDIRECTS = frozenset({301, 302, 303, 307, 308})

#: Schemes without "//" an admin might paste, refused by name rather than as garbage.
_OTHER_SCHEMES = frozenset({"data", "file", "javascript", "mailto", "news", "urn", "about"})

_ACCEPT = "application/samlmetadata+xml, application/xml, text/xml"

#: Where an admin finds the right URL; repeated by several messages.
_WHERE_TO_COPY = "in Okta, copy the Metadata URL from the Sign On tab"

# A host name once IDNA has made it ASCII. Underscores occur in real host names.
_HOSTNAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")

# Ranges ``is_global`` lets through (or lets through in some Python versions)
# although nothing on them can be a public IdP. Listed explicitly so the rule
# does not drift with the interpreter's idea of "global".
_NOT_PUBLIC_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata services
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
    )
)
_NOT_PUBLIC_V6 = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/32",  # Teredo: the IPv4 end is hidden, so it cannot be checked
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing
        "fc00::/7",  # unique-local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated, still routed inside some sites)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")

# What a host the operator named for development may also resolve to: the
# machine itself and private networks (containers, a LAN), never link-local
# (the cloud metadata service) or anything unroutable.
_DEV_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)
_DEV_V6 = (ipaddress.IPv6Network("::1/128"), ipaddress.IPv6Network("fc00::/7"))


class MetadataFetchError(PbIdentityError):
    """The IdP metadata could not be fetched from the URL; ``finding`` says why and what to do.

    ``str(error)`` is the finding's message: one sentence the admin can act on.
    """

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


@attrs.frozen
class FetchedMetadata:
    """The metadata document as fetched.

    ``url`` is the address it was finally served from, ``redirects`` the
    addresses that answered with a redirect on the way there (the pasted URL
    first), ``content_type`` the ``Content-Type`` the server declared.
    """

    url: str
    body: bytes
    redirects: tuple[str, ...]
    content_type: str | None


def is_public_address(address: Address) -> bool:
    """Whether an address is on the public internet, so fetching from it cannot reach our network.

    Loopback, private, link-local (cloud metadata at 169.254.169.254),
    carrier-grade NAT, multicast, reserved, unspecified, documentation,
    unique-local and site-local addresses are not public. An IPv6 address that
    embeds an IPv4 one (IPv4-mapped, IPv4-compatible, 6to4, NAT64) is public
    only if the IPv4 address is.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_v4(address)
        if embedded is not None:
            return is_public_address(embedded)
        return address.is_global and not any(address in net for net in _NOT_PUBLIC_V6)
    return address.is_global and not any(address in net for net in _NOT_PUBLIC_V4)


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    # These forms reach the IPv4 address they carry (the kernel, a 6to4 relay
    # or a NAT64 gateway translates), so they are judged by it.
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _V4_COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _is_dev_address(address: Address) -> bool:
    if is_public_address(address):
        return True
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped
        if embedded is not None:
            return _is_dev_address(embedded)
        return any(address in net for net in _DEV_V6)
    return any(address in net for net in _DEV_V4)


def fetch_metadata(
    url: str,
    *,
    timeout: float = 10.0,
    max_bytes: int = 1_048_576,
    max_redirects: int = 3,
    dev_hosts: frozenset[str] = frozenset(),
    resolve: Resolver | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> FetchedMetadata:
    """Fetch IdP metadata from a tenant-supplied URL, refusing anything that could reach inside.

    Only ``https`` URLs are fetched, and only from hosts whose every resolved
    address is public (:func:`is_public_address`); the connection is made to
    the checked address, with the certificate verified against the host name.
    Redirects (at most ``max_redirects``) are checked the same way, hop by hop.

    ``timeout`` bounds the connection and each read; the whole fetch may take
    three times as long. A body larger than ``max_bytes`` is refused without
    being read further. ``dev_hosts`` names hosts an operator allows for
    development: for them plain ``http`` (unless a redirect leaves ``https``)
    and loopback or private addresses are accepted. ``resolve`` looks host
    names up (default: :func:`socket.getaddrinfo`); ``ssl_context`` verifies
    certificates (default: :func:`ssl.create_default_context`).

    Raises :class:`MetadataFetchError` for every failure.
    """
    if timeout <= 0 or max_bytes <= 0 or max_redirects < 0:
        raise ValueError("timeout and max_bytes must be positive, max_redirects not negative")
    fetcher = _Fetcher(
        timeout=timeout,
        max_bytes=max_bytes,
        dev_hosts=frozenset(_normal_host(host) for host in dev_hosts),
        resolve=resolve if resolve is not None else _system_resolve,
        ssl_context=ssl_context,
    )
    redirects: list[str] = []
    target = _parse_url(url.strip(), dev_hosts=fetcher.dev_hosts, hop=0, previous=None)
    while True:
        outcome = fetcher.get(target)
        if isinstance(outcome, FetchedMetadata):
            return attrs.evolve(outcome, redirects=tuple(redirects))
        if len(redirects) >= max_redirects:
            raise _error(
                "fetch.too_many_redirects",
                f"The metadata URL redirected more than {max_redirects} times "
                f"(the last hop was to {_show(outcome)}): paste the address the metadata "
                f"is finally served from, or {_WHERE_TO_COPY}.",
                where=_hop_name(len(redirects) + 1),
            )
        redirects.append(target.url)
        target = _parse_url(
            outcome, dev_hosts=fetcher.dev_hosts, hop=len(redirects), previous=target
        )


@attrs.frozen
class _Target:
    """One URL to request, checked and split into what the connection needs."""

    url: str
    scheme: str
    host: str  # ASCII (IDNA), lower case, without brackets
    port: int
    request_target: str  # path and query, as sent on the request line
    literal: Address | None  # the host when the URL names an address
    dev: bool
    hop: int

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def _parse_url(
    url: str, *, dev_hosts: frozenset[str], hop: int, previous: _Target | None
) -> _Target:
    subject = (
        "The metadata URL"
        if hop == 0
        else f"The metadata URL redirected (hop {hop}) to {_show(url)}, which"
    )
    where = _hop_name(hop)
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise _error(
            "fetch.invalid_url",
            f"{subject} is not a valid web address: paste the metadata URL exactly as the "
            f"identity provider shows it ({_WHERE_TO_COPY}).",
            where=where,
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in {"https", "http"}:
        # "idp.example.com/metadata" or "idp.example.com:443/x" (which urlsplit
        # reads as a scheme) lack the scheme; "file:", "data:" name another one.
        if "://" not in url and scheme not in _OTHER_SCHEMES:
            raise _error(
                "fetch.invalid_url",
                f"{subject} must be a full address starting with https://: paste it exactly "
                f"as the identity provider shows it ({_WHERE_TO_COPY}).",
                where=where,
            )
        raise _error(
            "fetch.not_https",
            f"{subject} is a {_show(scheme)}: address, not https://: paste the https:// "
            f"metadata URL of the identity provider instead ({_WHERE_TO_COPY}).",
            where=where,
        )
    if "@" in parts.netloc:
        raise _error(
            "fetch.invalid_url",
            f"{subject} contains a user name or password: paste the public metadata URL, "
            "which needs no credentials.",
            where=where,
        )
    raw_host = parts.hostname or ""
    literal = _literal_address(raw_host)
    if literal is not None:
        host = str(literal)
    else:
        try:
            host = raw_host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            host = ""
        if not _HOSTNAME.fullmatch(host):
            raise _error(
                "fetch.invalid_url",
                f"{subject} has no valid host name: paste the metadata URL exactly as the "
                f"identity provider shows it ({_WHERE_TO_COPY}).",
                where=where,
            )
    dev = _normal_host(host) in dev_hosts
    if scheme == "http" and not (dev and (previous is None or previous.scheme == "http")):
        raise _error(
            "fetch.not_https",
            f"{subject} starts with http://, not https://: only encrypted addresses are "
            "fetched, so paste the https:// metadata URL of the identity provider.",
            where=where,
        )
    path = urllib.parse.quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    query = urllib.parse.quote(parts.query, safe="/?%:@!$&'()*+,;=-._~")
    return _Target(
        url=urllib.parse.urlunsplit((scheme, parts.netloc, parts.path, parts.query, "")),
        scheme=scheme,
        host=host,
        port=port if port is not None else (443 if scheme == "https" else 80),
        request_target=f"{path}?{query}" if query else path,
        literal=literal,
        dev=dev,
        hop=hop,
    )


def _literal_address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _normal_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


def _hop_name(hop: int) -> str:
    return "metadata URL" if hop == 0 else f"redirect {hop}"


def _show(url: str) -> str:
    # Redirect targets come from the remote server: keep messages readable.
    return url if len(url) <= 200 else url[:197] + "..."


def _error(code: str, message: str, *, where: str) -> MetadataFetchError:
    return MetadataFetchError(Finding(code=code, severity="error", message=message, where=where))


def _system_resolve(host: str, port: int) -> list[Address]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [
        ipaddress.ip_address(sockaddr[0])
        for family, _, _, _, sockaddr in infos
        if family in (socket.AF_INET, socket.AF_INET6)
    ]


class _Deadline:
    """The moment the whole fetch must be over."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self._end - time.monotonic()

    def bound(self, timeout: float) -> float:
        """``timeout``, shortened so it ends by the deadline; TimeoutError once it has passed."""
        left = self.remaining()
        if left <= 0:
            raise TimeoutError
        return min(timeout, left)


class _Watchdog:
    """Shuts a connection down at the deadline, whatever read it is blocked in.

    A socket timeout bounds each read, not their sum; ``http.client`` reads the
    status line and headers in as many reads as the server likes. Shutting the
    socket down (through a duplicate of its descriptor, which stays valid while
    the TLS layer owns the original) wakes any blocked read.
    """

    def __init__(self) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._guard: socket.socket | None = None
        self._timer: threading.Timer | None = None

    def arm(self, sock: socket.socket, seconds: float) -> None:
        self._guard = sock.dup()
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        # Under the lock so the descriptor cannot be closed (and its number
        # reused by another socket) between the check and the shutdown.
        with self._lock:
            if self._guard is None:
                return
            self.fired = True
            with contextlib.suppress(OSError):  # already closed by the peer
                self._guard.shutdown(socket.SHUT_RDWR)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            if self._guard is not None:
                self._guard.close()
                self._guard = None


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to addresses already checked, never to what the name resolves to later.

    TLS is verified against the host name of the URL (SNI and certificate
    check), not against the address connected to.
    """

    def __init__(
        self,
        target: _Target,
        addresses: Sequence[Address],
        *,
        timeout: float,
        deadline: _Deadline,
        watchdog: _Watchdog,
        tls: ssl.SSLContext | None,
    ) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._addresses = addresses
        self._per_operation = timeout
        self._deadline = deadline
        self._watchdog = watchdog
        self._tls = tls

    def connect(self) -> None:
        """Connect to the first checked address that answers, then start TLS."""
        failure: OSError | None = None
        for address in self._addresses:
            # Every address was checked; the next one is tried when one does
            # not answer, as a browser would, until the deadline.
            timeout = self._deadline.bound(self._per_operation)
            try:
                raw = socket.create_connection((str(address), self.port), timeout=timeout)
            except OSError as error:
                failure = error
                continue
            break
        else:
            raise failure if failure is not None else OSError("no address to connect to")
        raw.settimeout(self._per_operation)
        try:
            self._watchdog.arm(raw, self._deadline.remaining())
            self.sock = (
                raw if self._tls is None else self._tls.wrap_socket(raw, server_hostname=self.host)
            )
        except BaseException:
            raw.close()
            raise


class _Fetcher:
    """The settings shared by every hop of one fetch, and its deadline."""

    def __init__(
        self,
        *,
        timeout: float,
        max_bytes: int,
        dev_hosts: frozenset[str],
        resolve: Resolver,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.dev_hosts = dev_hosts
        self._resolve = resolve
        self._ssl_context = ssl_context
        self._deadline = _Deadline(timeout * _DEADLINE_FACTOR)

    def get(self, target: _Target) -> FetchedMetadata | str:
        """Request one URL: the metadata, or the absolute URL a redirect points to."""
        addresses = self._addresses(target)
        watchdog = _Watchdog()
        connection = _PinnedConnection(
            target,
            addresses,
            timeout=self.timeout,
            deadline=self._deadline,
            watchdog=watchdog,
            tls=self._tls_context() if target.scheme == "https" else None,
        )
        try:
            outcome = self._exchange(connection, target)
        except MetadataFetchError:
            # An empty or cut-off body may only be the watchdog's doing.
            if watchdog.fired:
                raise self._timed_out(target) from None
            raise
        except Exception as error:
            raise self._explain(error, target, fired=watchdog.fired) from None
        finally:
            connection.close()
            watchdog.disarm()
        # A shut-down connection can look like a body that simply ended.
        if watchdog.fired:
            raise self._timed_out(target)
        return outcome

    def _tls_context(self) -> ssl.SSLContext:
        # Made only once a connection is due: loading the system's trusted
        # certificates is the slowest part of refusing a URL otherwise.
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _addresses(self, target: _Target) -> list[Address]:
        if target.literal is not None:
            found: list[Address] = [target.literal]
        else:
            found = self._lookup(target)
        unique = list(dict.fromkeys(found))
        if not unique:
            raise self._not_found(target)
        # Every address, not just the one connected to: a name that also
        # resolves inside is refused rather than cherry-picked.
        allowed = _is_dev_address if target.dev else is_public_address
        if not all(allowed(address) for address in unique):
            # The address itself is not shown: it would tell the tenant what
            # our internal DNS answers.
            subject = (
                f"The host {target.host} of the metadata URL"
                if target.hop == 0
                else f"The metadata URL redirected (hop {target.hop}) to "
                f"{_show(target.url)}, whose host"
            )
            raise _error(
                "fetch.private_address",
                f"{subject} resolves to an address that is not on the public internet: "
                "paste the identity provider's public metadata URL "
                f"({_WHERE_TO_COPY}).",
                where=_hop_name(target.hop),
            )
        return unique

    def _lookup(self, target: _Target) -> list[Address]:
        # The resolver runs in a thread so a name server that never answers
        # cannot hold the fetch past its timeout.
        found: list[Address] = []
        failures: list[Exception] = []

        def run() -> None:
            try:
                found.extend(self._resolve(target.host, target.port))
            except Exception as error:
                failures.append(error)

        thread = threading.Thread(target=run, name="pbidentity-resolve", daemon=True)
        thread.start()
        try:
            thread.join(self._deadline.bound(self.timeout))
        except TimeoutError:
            raise self._timed_out(target) from None
        if thread.is_alive():
            raise _error(
                "fetch.dns",
                f"Looking up the host {target.host} took longer than {self.timeout:g} seconds: "
                "check the host name in the metadata URL and try again.",
                where=_hop_name(target.hop),
            )
        if failures:
            raise self._not_found(target)
        return found

    def _not_found(self, target: _Target) -> MetadataFetchError:
        return _error(
            "fetch.dns",
            f"The host {target.host} could not be found: check the spelling of the metadata "
            f"URL ({_WHERE_TO_COPY}).",
            where=_hop_name(target.hop),
        )

    def _exchange(self, connection: _PinnedConnection, target: _Target) -> FetchedMetadata | str:
        connection.request(
            "GET",
            target.request_target,
            headers={
                "Host": target.host_header,
                "User-Agent": f"pbidentity/{__version__}",
                "Accept": _ACCEPT,
                # Compressed bodies would escape the size cap (a small gzip
                # can expand a thousandfold), so none are asked for.
                "Accept-Encoding": "identity",
                "Connection": "close",
            },
        )
        response = connection.getresponse()
        try:
            return self._read(response, target)
        finally:
            response.close()

    def _read(self, response: http.client.HTTPResponse, target: _Target) -> FetchedMetadata | str:
        status = response.status
        where = _hop_name(target.hop)
        if status in _REDIRECTS:
            location = response.getheader("Location")
            if not location or not location.strip():
                raise _error(
                    "fetch.status",
                    f"{target.host} answered HTTP {status} (a redirect) without saying where "
                    f"to: paste the address the metadata is served from ({_WHERE_TO_COPY}).",
                    where=where,
                )
            return urllib.parse.urljoin(target.url, location.strip())
        if status != http.HTTPStatus.OK:
            raise _error(
                "fetch.status",
                f"{target.host} answered HTTP {_status_text(status)} instead of the "
                f"metadata: {_status_hint(status)}.",
                where=where,
            )
        encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
        if encoding != "identity":
            raise _error(
                "fetch.encoding",
                f"{target.host} sent the metadata compressed ({_show(encoding)}) although it was "
                "asked not to: ask the identity provider's admin, or paste the document itself.",
                where=where,
            )
        if response.length is not None and response.length > self.max_bytes:
            raise self._too_large(target, response.length)
        body = bytearray()
        while True:
            chunk = response.read(min(_READ_CHUNK, self.max_bytes + 1 - len(body)))
            if not chunk:
                break
            body += chunk
            # Stop at the first byte past the cap: a chunked or unsized body
            # is never read in full.
            if len(body) > self.max_bytes:
                raise self._too_large(target, None)
        if not body.strip():
            raise _error(
                "fetch.empty",
                f"{target.host} answered with an empty document: check that the URL is the "
                f"SAML metadata URL ({_WHERE_TO_COPY}).",
                where=where,
            )
        return FetchedMetadata(
            url=target.url,
            body=bytes(body),
            redirects=(),
            content_type=response.getheader("Content-Type"),
        )

    def _too_large(self, target: _Target, size: int | None) -> MetadataFetchError:
        said = f"{size} bytes" if size is not None else "larger than that"
        return _error(
            "fetch.too_large",
            f"The document at {_show(target.url)} is {said}, over the {self.max_bytes}-byte "
            "limit for metadata: check that the URL points to the SAML metadata and not to "
            "another file.",
            where=_hop_name(target.hop),
        )

    def _timed_out(self, target: _Target) -> MetadataFetchError:
        return _error(
            "fetch.timeout",
            f"Fetching the metadata from {target.host} took longer than "
            f"{self._deadline.seconds:g} seconds in all: check that the identity provider is "
            "up and try again.",
            where=_hop_name(target.hop),
        )

    def _explain(self, error: Exception, target: _Target, *, fired: bool) -> MetadataFetchError:
        """The admin's version of what went wrong on the wire."""
        where = _hop_name(target.hop)
        host = target.host
        if fired or self._deadline.remaining() <= 0:
            return self._timed_out(target)
        if isinstance(error, ssl.SSLCertVerificationError):
            return _error("fetch.tls", _certificate_message(error, host), where=where)
        if isinstance(error, ssl.SSLError):
            return _error(
                "fetch.tls",
                f"The secure (TLS) connection to {host} failed: check that the metadata URL "
                "is the identity provider's https address and that its server accepts "
                "TLS 1.2 or later.",
                where=where,
            )
        if isinstance(error, TimeoutError):
            return _error(
                "fetch.timeout",
                f"{host} did not answer within {self.timeout:g} seconds: check that the "
                "identity provider is up and try again.",
                where=where,
            )
        if isinstance(error, http.client.HTTPException):
            return _error(
                "fetch.protocol",
                f"{host} did not answer with a valid web response: check that the metadata "
                f"URL points to the identity provider ({_WHERE_TO_COPY}).",
                where=where,
            )
        if isinstance(error, OSError):
            return _error(
                "fetch.connect",
                f"Could not connect to {host} on port {target.port}: check the metadata URL "
                "and that the identity provider is reachable from the internet.",
                where=where,
            )
        # ValueError (a header or target http.client refuses) and the like.
        return _error(
            "fetch.invalid_url",
            f"The metadata URL could not be requested from {host}: paste it exactly as the "
            f"identity provider shows it ({_WHERE_TO_COPY}).",
            where=where,
        )


def _certificate_message(error: ssl.SSLCertVerificationError, host: str) -> str:
    # OpenSSL's X509_V_ERR_* codes for the cases an admin can tell apart.
    code = error.verify_code
    if code == 62:  # hostname mismatch
        return (
            f"The TLS certificate of {host} is issued for another name: check the host name "
            "in the metadata URL, which must be the one the identity provider's certificate "
            "names."
        )
    if code == 10:  # certificate has expired
        return (
            f"The TLS certificate of {host} has expired: the identity provider must renew it "
            "before the metadata can be fetched."
        )
    return (
        f"The TLS certificate of {host} is not trusted (self-signed or from an unknown "
        "authority): the metadata URL must be served with a certificate from a public "
        "certificate authority."
    )


def _status_text(status: int) -> str:
    # The standard phrase, not the server's: the reason line is the remote's free text.
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _status_hint(status: int) -> str:
    if status in {401, 403}:
        return f"the metadata URL needs to be public: {_WHERE_TO_COPY}"
    if status in {404, 410}:
        return f"check that the URL was copied whole ({_WHERE_TO_COPY})"
    if status >= 500:
        return "the identity provider has a problem; try again later"
    return f"paste the metadata URL exactly as the identity provider shows it ({_WHERE_TO_COPY})"
