"""Real local HTTP(S) servers for the metadata fetcher's tests, and the certificates they serve.

Each server listens on 127.0.0.1 on a free port, handles every connection in
its own thread, and records what it saw (connections, TLS failures, SNI names,
requests), so a test can prove a request was made, or never was. Handlers
write raw bytes, which lets them misbehave in ways a framework would not:
trickle, stall, lie about the length, or send garbage.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from collections.abc import Iterable
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from ipaddress import IPv4Address
from pathlib import Path
from types import TracebackType

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "METADATA",
    "Exchange",
    "Handler",
    "Pki",
    "Request",
    "Server",
    "make_pki",
]

#: What the servers hand out as metadata; the fetcher does not parse it.
METADATA = (
    b'<?xml version="1.0"?>\n'
    b'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
    b'entityID="http://www.okta.com/exk1test"/>\n'
)

#: The names the server certificate is valid for.
CERT_NAMES = ("localhost", "idp.test")


@attrs.frozen
class Pki:
    """A test CA and two server certificates it issued: a valid one and an expired one."""

    ca_pem: str
    cert_file: Path
    key_file: Path
    expired_cert_file: Path
    expired_key_file: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts the test CA only (and verifies host names)."""
        return ssl.create_default_context(cadata=self.ca_pem)

    def server_context(self, *, expired: bool = False) -> ssl.SSLContext:
        """A server context serving the valid (or the expired) certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if expired:
            context.load_cert_chain(self.expired_cert_file, self.expired_key_file)
        else:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_pki(directory: Path) -> Pki:
    """Generate the CA and the server certificates (EC keys: fast) into ``directory``."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pbidentity test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(name: str, not_before: datetime, not_after: datetime) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CERT_NAMES[0])]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        *(x509.DNSName(dns) for dns in CERT_NAMES),
                        x509.IPAddress(IPv4Address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        cert_file = directory / f"{name}.pem"
        key_file = directory / f"{name}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_file, key_file

    cert_file, key_file = leaf("server", now - timedelta(days=1), now + timedelta(days=30))
    expired_cert, expired_key = leaf("expired", now - timedelta(days=30), now - timedelta(days=1))
    return Pki(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        cert_file=cert_file,
        key_file=key_file,
        expired_cert_file=expired_cert,
        expired_key_file=expired_key,
    )


@attrs.frozen
class Request:
    """A request as the server received it; header names in lower case."""

    method: str
    target: str
    headers: dict[str, str]

    @property
    def path(self) -> str:
        """The target without its query string."""
        return self.target.split("?", 1)[0]


class Exchange:
    """The connection a handler answers on, with what it needs to misbehave."""

    def __init__(self, connection: socket.socket, server: Server) -> None:
        self.connection = connection
        self.server = server

    def send(self, data: bytes) -> None:
        """Write raw bytes to the client."""
        self.connection.sendall(data)

    def respond(
        self, status: int, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Send a whole response with a Content-Length."""
        self.send(head(status, [*headers, ("Content-Length", str(len(body)))]) + body)

    def wait(self, seconds: float) -> bool:
        """Sleep, cut short when the server stops; True if it stopped."""
        return self.server.stopping.wait(seconds)

    def client_hung_up(self, seconds: float) -> bool:
        """Whether the client closes the connection within ``seconds`` (it has nothing to send)."""
        self.connection.settimeout(seconds)
        try:
            return self.connection.recv(1) == b""
        except TimeoutError:
            return False
        except OSError:  # reset: it closed with our data unread
            return True


Handler = Callable[[Request, Exchange], None]


def head(status: int, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A status line and headers, ready to send."""
    lines = [f"HTTP/1.1 {status} Test", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Server:
    """A threaded HTTP (or HTTPS, given a context) server on 127.0.0.1 that records everything."""

    def __init__(self, tls: ssl.SSLContext | None = None, *, greeting: bytes = b"") -> None:
        self.tls = tls
        #: Sent as soon as a client connects, before (and instead of) reading a request.
        self.greeting = greeting
        self.routes: dict[str, Handler] = {}
        self.stopping = threading.Event()
        self.connections = 0
        self.tls_failures = 0
        self.sni: list[str | None] = []
        self.requests: list[Request] = []
        #: What handlers want to report to the test (bytes sent, a hang-up seen).
        self.notes: dict[str, object] = {}
        #: Unexpected exceptions in handlers: a broken test server must not pass silently.
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        if tls is not None:
            tls.sni_callback = self._record_sni
        self._acceptor = threading.Thread(target=self._accept, name="test-server", daemon=True)
        self._acceptor.start()

    def url(self, path: str, host: str = "localhost") -> str:
        """An absolute URL on this server."""
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://{host}:{self.port}{path}"

    def route(self, path: str, handler: Handler) -> None:
        """Answer requests for ``path`` (query string ignored) with ``handler``."""
        self.routes[path] = handler

    def close(self) -> None:
        """Stop accepting, wake the handlers, and wait for every thread."""
        if not self.stopping.is_set():
            self.stopping.set()
            # Wake the blocked accept() with a connection it will drop.
            socket.create_connection(("127.0.0.1", self.port)).close()
        self._acceptor.join()
        for thread in self._threads:
            thread.join(5)
        self._listener.close()  # closing twice is harmless: tests close early to read notes

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _record_sni(self, _sock: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        with self._lock:
            self.sni.append(name)

    def _accept(self) -> None:
        while True:
            connection, _ = self._listener.accept()
            if self.stopping.is_set():
                connection.close()
                return
            with self._lock:
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, raw: socket.socket) -> None:
        connection = raw
        try:
            raw.settimeout(5)
            if self.tls is not None:
                try:
                    connection = self.tls.wrap_socket(raw, server_side=True)
                except OSError:
                    with self._lock:
                        self.tls_failures += 1
                    return
            if self.greeting:
                connection.sendall(self.greeting)
                return
            request = _read_request(connection)
            if request is None:
                return
            with self._lock:
                self.requests.append(request)
            handler = self.routes.get(request.path, _not_found)
            handler(request, Exchange(connection, self))
        except OSError:
            pass  # the fetcher hung up, as several tests make it do
        except BaseException as error:
            self.errors.append(error)
        finally:
            connection.close()
            raw.close()


def _not_found(_request: Request, exchange: Exchange) -> None:
    exchange.respond(404, b"not found")


def _read_request(connection: socket.socket) -> Request | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(4096)
        if not chunk or len(data) > 65_536:
            return None
        data += chunk
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Request(method=method, target=target, headers=headers)
