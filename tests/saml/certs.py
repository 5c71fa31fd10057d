"""Certificates made at test time: RSA of any size, DSA and EC keys, any validity window.

Keys are costly to generate (an RSA 2048 key takes tens of milliseconds), so
they are cached per type and size: certificates differ, keys are reused.
"""

from __future__ import annotations

import functools
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

__all__ = [
    "KeyType",
    "base64_body",
    "expired_certificate",
    "expiring_certificate",
    "make_certificate",
    "private_key",
]

KeyType = Literal["rsa", "dsa", "ec"]

PrivateKey = rsa.RSAPrivateKey | dsa.DSAPrivateKey | ec.EllipticCurvePrivateKey

#: A fixed moment tests can use as "now"; certificates default to a window around it.
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@functools.cache
def private_key(key_type: KeyType = "rsa", key_size: int = 2048) -> PrivateKey:
    """A private key of that type and size, the same one on every call."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    if key_type == "dsa":
        return dsa.generate_private_key(key_size=key_size)
    return ec.generate_private_key(ec.SECP256R1())


def make_certificate(
    *,
    cn: str = "idp.test",
    key_size: int = 2048,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    key_type: KeyType = "rsa",
    serial: int | None = None,
) -> tuple[bytes, str]:
    """A self-signed certificate: ``(private key PEM, certificate PEM)``.

    The validity window defaults to a year before :data:`NOW` up to a year
    after it. The key is shared by all certificates of the same type and size;
    pass ``serial`` (or another ``cn``) to tell two certificates apart.
    """
    key = private_key(key_type, key_size)
    before = not_before if not_before is not None else NOW - timedelta(days=365)
    after = not_after if not_after is not None else NOW + timedelta(days=365)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(before)
        .not_valid_after(after)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def expired_certificate(*, cn: str = "idp.test", now: datetime = NOW) -> tuple[bytes, str]:
    """A certificate that expired a day before ``now``."""
    return make_certificate(
        cn=cn, not_before=now - timedelta(days=400), not_after=now - timedelta(days=1)
    )


def expiring_certificate(
    *, cn: str = "idp.test", now: datetime = NOW, days: int = 10
) -> tuple[bytes, str]:
    """A certificate that expires ``days`` days after ``now``."""
    return make_certificate(
        cn=cn, not_before=now - timedelta(days=300), not_after=now + timedelta(days=days)
    )


def base64_body(cert_pem: str) -> str:
    """The base64 body of a PEM certificate on one line, as metadata carries it."""
    lines = cert_pem.strip().splitlines()
    return "".join(line for line in lines if not line.startswith("-----"))
