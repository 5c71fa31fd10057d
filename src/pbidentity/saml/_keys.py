"""The SP's own key pairs: one set decrypts assertions, one signs AuthnRequests.

An IdP learns these certificates from the SP metadata (an ``encryption`` and
a ``signing`` ``KeyDescriptor`` each). A key set is an ordered tuple so that
a key can be changed without a failed sign-in (a rollover):

* encryption: every key in the set is published and accepted to decrypt.
  Add the new key, let the IdP encrypt to its certificate, then drop the old
  one.
* signing: the *first* key signs; every key is published, so an IdP that
  re-reads the metadata trusts the next key before it is used. Add the new
  key after the current one, then move it first, then drop the old one.

A private key is never logged, never in a ``repr`` and never in a finding:
only the certificate's SHA-256 fingerprint names a key.
"""

from __future__ import annotations

import functools
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from pbidentity.exceptions import ConfigurationError

__all__ = ["SpKey", "SpKeys", "generate_sp_key"]

#: The smallest RSA modulus accepted for an SP key (as for an IdP's).
_MIN_RSA_BITS = 2048


def _pem_text(value: str | bytes) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value


@functools.lru_cache(maxsize=64)
def _private_key(pem: str) -> rsa.RSAPrivateKey:
    # Loading checks the key's consistency, which costs milliseconds for
    # RSA: a key is loaded once per process, not once per sign-in.
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigurationError(
            "An SP key must be an RSA key: IdPs encrypt to RSA keys (RSA-OAEP) and sign "
            f"requests with RSA-SHA256; received a {type(key).__name__}."
        )
    return key


@functools.lru_cache(maxsize=64)
def _certificate(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode("ascii"))


@attrs.frozen
class SpKey:
    """One SP key pair: an RSA private key and its certificate, both PEM.

    Made with :func:`generate_sp_key` or from the host's own files. The
    private key stays out of ``repr`` and of every message: ``str(key)``
    names the certificate by its fingerprint.
    """

    private_key_pem: str = attrs.field(converter=_pem_text, repr=False)
    certificate_pem: str = attrs.field(converter=_pem_text)

    def __attrs_post_init__(self) -> None:
        try:
            key = _private_key(self.private_key_pem)
            certificate = _certificate(self.certificate_pem)
        except (ValueError, TypeError, UnicodeEncodeError) as error:
            # The library's message may quote part of what it read: never repeat it.
            raise ConfigurationError(
                "An SP key needs a PEM private key without a password and its PEM "
                f"certificate; these could not be read ({type(error).__name__})."
            ) from None
        if key.key_size < _MIN_RSA_BITS:
            raise ConfigurationError(
                f"An SP key must be RSA of at least {_MIN_RSA_BITS} bits; received "
                f"{key.key_size} bits."
            )
        public = certificate.public_key()
        if not isinstance(public, rsa.RSAPublicKey) or (
            public.public_numbers() != key.public_key().public_numbers()
        ):
            raise ConfigurationError(
                f"The SP certificate {self.fingerprint} is not the certificate of its private key."
            )

    def __str__(self) -> str:
        return f"SP key {self.fingerprint}"

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        """The private key, loaded (once per process)."""
        return _private_key(self.private_key_pem)

    @property
    def certificate(self) -> x509.Certificate:
        """The certificate, loaded (once per process)."""
        return _certificate(self.certificate_pem)

    @property
    def certificate_body(self) -> str:
        """The certificate's base64 body on one line, as metadata and KeyInfo carry it."""
        lines = self.certificate_pem.strip().splitlines()
        return "".join(line.strip() for line in lines if not line.startswith("-----"))

    @property
    def fingerprint(self) -> str:
        """The certificate's SHA-256 fingerprint as IdP consoles show it: ``AB:CD:...``."""
        return ":".join(
            f"{b:02X}" for b in _certificate(self.certificate_pem).fingerprint(hashes.SHA256())
        )


def _key_tuple(value: SpKey | tuple[SpKey, ...] | list[SpKey]) -> tuple[SpKey, ...]:
    return (value,) if isinstance(value, SpKey) else tuple(value)


@attrs.frozen(kw_only=True)
class SpKeys:
    """The SP's key sets: ``encryption`` decrypts assertions, ``signing`` signs AuthnRequests.

    Either may be empty (that feature is then unavailable); the same key may
    serve both. See the module documentation for the order within a set.
    """

    encryption: tuple[SpKey, ...] = attrs.field(default=(), converter=_key_tuple)
    signing: tuple[SpKey, ...] = attrs.field(default=(), converter=_key_tuple)

    @property
    def signing_key(self) -> SpKey | None:
        """The key that signs AuthnRequests now: the first of ``signing``."""
        return self.signing[0] if self.signing else None


def generate_sp_key(
    common_name: str,
    *,
    key_size: int = 2048,
    valid_for: timedelta = timedelta(days=3650),
    now: datetime | None = None,
) -> SpKey:
    """A new RSA key pair with a self-signed certificate for ``common_name``.

    IdPs do not check an SP certificate's issuer or dates for encryption or
    request signing (SAML metadata interoperability profile), so a
    self-signed certificate valid for ten years is the usual choice; rolling
    the key over is what replaces it. RSA-2048 is what IdPs use for their own
    signing keys; each decryption with a 3072-bit key costs about 0.7 ms more.
    """
    if key_size < _MIN_RSA_BITS:
        raise ConfigurationError(f"An SP key must be RSA of at least {_MIN_RSA_BITS} bits.")
    moment = datetime.now(UTC) if now is None else now
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - timedelta(minutes=5))
        .not_valid_after(moment + valid_for)
        .sign(key, hashes.SHA256())
    )
    return SpKey(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii"),
        certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
    )
