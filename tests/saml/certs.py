"""Certificates made at test time: RSA of any size, EC and Ed25519 keys, any validity window.

Keys are costly to generate (an RSA 2048 key takes tens of milliseconds), so
they are cached per type and size: certificates differ, keys are reused.
A DSA certificate is the one exception, kept as text (:data:`DSA_CERTIFICATE`):
cryptography deprecates DSA, and the suite runs with warnings as errors.
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
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

__all__ = [
    "DSA_CERTIFICATE",
    "KeyType",
    "base64_body",
    "expired_certificate",
    "expiring_certificate",
    "make_certificate",
    "private_key",
]

KeyType = Literal["rsa", "ec", "ed25519"]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

#: A fixed moment tests can use as "now"; certificates default to a window around it.
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@functools.cache
def private_key(key_type: KeyType = "rsa", key_size: int = 2048) -> PrivateKey:
    """A private key of that type and size, the same one on every call."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
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
        # Ed25519 signs the whole message itself: no separate hash.
        .sign(key, None if key_type == "ed25519" else hashes.SHA256())
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


#: A self-signed certificate ('CN=dsa.idp.test') for a 2048-bit DSA key, valid
#: from 2020 to 2099, made once with cryptography 50: later releases deprecate
#: making (or even loading) DSA keys.
DSA_CERTIFICATE = """\
-----BEGIN CERTIFICATE-----
MIIEDzCCA7SgAwIBAgIBATALBglghkgBZQMEAwIwFzEVMBMGA1UEAwwMZHNhLmlk
cC50ZXN0MCAXDTIwMDEwMTAwMDAwMFoYDzIwOTkxMjMxMDAwMDAwWjAXMRUwEwYD
VQQDDAxkc2EuaWRwLnRlc3QwggNHMIICOQYHKoZIzjgEATCCAiwCggEBAI0yv2T2
IknlXPrin/BDFwI7Fnm3QG2tU1rTw9CsLf0wJRw+58YFFCbVubm2zNHwjTguuCi7
RhEp9p4fpr0mCq00yTCNI/d7t+8wHDkP9pkpGKWzcsAMNR/Ds/aFElFaVDNQMnML
xbEzr7eAeNBUaSGTbfOw/P62kXEoB5AcwddkmpnK131p9WhJz/k34IKieINOYDEA
UcAGP5bUt1K6DvpX6zIK7g1jG3oCkl/Oj/ERr1R1NZI1pzv1OrgNgE43h+4Sual+
gO9fHG1kGCgcVOui1niSdamzeAo1xrZ5iCOzFzOIyUTKRX69BfgKNgOPl3ezy1lL
kAFnGTgrdjvkD6sCIQCk/L6y+4JM5iQoZ2G+SAVCaPWzAkaokiAKaOWwO2bI6QKC
AQAjwb7aop7cCnQ9ojmIrIe0JkMOjLIg196JZekeqM9CFKaMI8BdwbE+16DQCfs6
GUQlVi0T0iIA2KNShJHNXlOWN1ffNRCXp+O8cuWu8c9lz17xHJU6pgbRckSlOBHb
4rNFl0acYIorYm/HkV9Oq7qZlzwnMq9fXBIUa235ud5gERU4y41p4Zn0l/Gt5OnY
MHIZLRf8QXzA2Pao7ey7h/mnrHqd5ocdvOnn9vEl13pmK8a9parYGlqDrquiTBYd
OuJJlLkazueRLtxvonPwQGgzmQRZyvcvJpNdv1VGlOT1EVQ4ZuF+5ry2nN867a0G
dgjVSkozmFY+aPjpEMWT1bvXA4IBBgACggEBAICMSHDVj1dKDOiSHS/awr48MB6E
OKlSHyNluOBTSQN8bX+MPsDSUTmnpFhavSwhmY5PwQNfKCND/106Hl4Nvz6854Es
fRthtG5B0bd2OL+LbAjmvqmJ6zbX9KERh2lJ70L/H69P9Zyjr74BBTTNzFuTlD8E
7UEpsNEXFlSwkZSrs6GRiCCNI8tEA+OJJ23xvAE+BHHUYyZ5KMKk4oXOInbXQ8a7
70lHtEwLLRip6ftBZv0e3q817ablzDAapr/a9bpZPNiHUgklBFmhCms4EBThKEC+
FyzSfSE3r9AO4UamtA4OKd+uP2235i9S88IQu3CaKvGjldYIuDpbseVDUyMwCwYJ
YIZIAWUDBAMCA0gAMEUCIA7oBIrC/4XskKk1L9IuIFRjWmVXANZGG1zJFUV/7bY4
AiEAhvWalyRdWAnxCYSVrU7QQu7m6mEniuCjBcedAl1G884=
-----END CERTIFICATE-----
"""
