"""Exact identity keys: when two spellings of an address name the same person.

Two comparisons of addresses live side by side in pbidentity, for two jobs:

* :func:`~pbidentity.domain.fold` (NFKC, then case folding) is lossy on
  purpose. It keeps userNames unique and finds candidates cheaply through the
  storage's folded indexes: refusing a look-alike duplicate is safe.
* :func:`email_key` is exact. It decides whether an authenticated identity
  *is* a member: a SAML sign-in, or an IdP identity taking over a member the
  app already had. ``ceo@straße.test``, ``ﬁnance@acme.test`` (a ligature) and
  ``finance@acme.test`` typed in full-width letters fold to an existing
  member's ``ceo@strasse.test`` and ``finance@acme.test``, but they are other
  addresses, which someone else may hold: their keys differ.

The rule of :func:`email_key`: the address is put in Unicode normalisation
form C (canonical composition only, so ``é`` typed as ``e`` and a combining
accent is ``é``) and split at its last ``@``; the local part is lower-cased
(``str.lower``, which maps case and nothing else: ``ß`` stays ``ß``, a
ligature stays a ligature); the domain is lower-cased and written in its
IDNA2008 A-label form, so ``BÜCHER.test``, ``bücher.test`` and
``xn--bcher-kva.test`` are one domain. What IDNA2008 refuses has no key.

This module must not depend on storage or protocols: it only compares strings.
"""

from __future__ import annotations

import functools
import unicodedata

import idna

from pbidentity.domain import fold
from pbidentity.exceptions import InputError

__all__ = [
    "email_key",
    "email_spellings",
    "explain_lookalike",
    "identity_key",
    "lookalike_characters",
]

# IDNA2008 separates labels with "." alone. UTS46 (and the stdlib's IDNA2003
# codec) also accept the ideographic, full-width and half-width full stops and
# map them to "."; that mapping is a compatibility fold like the ones the key
# refuses, and an address on the wire (a NameID, a SCIM userName) is protocol
# data, not something a person typed into a browser, so such a dot is refused
# rather than read as ".". (idna.encode would split on them silently.)
_OTHER_DOTS = frozenset("\u3002\uff0e\uff61")


def email_key(address: str) -> str:
    """Return the exact comparison key of an email address: ``local@a-label-domain``.

    Two addresses with equal keys are the same mailbox under the rule of this
    module: NFC, the local part lower-cased without compatibility mappings,
    the domain lower-cased and in IDNA2008 A-label form. Surrounding
    whitespace is ignored. Case differs only by ``str.lower``: ``ß`` is not
    ``ss``, ``ﬁ`` is not ``fi``, a full-width letter is not its ASCII twin,
    a Turkish dotless i (U+0131) is not ``i``, a Greek final sigma (U+03C2)
    is not the other sigma (U+03C3).

    Raises :class:`~pbidentity.exceptions.InputError`, saying why, for what is
    no address: no ``@``, an empty local part or domain, whitespace or control
    characters, a domain IDNA2008 refuses (full-width letters, a ligature, an
    underscore, an empty label, a trailing dot) or a dot other than ``.``.
    """
    value = unicodedata.normalize("NFC", address.strip())
    local, at, domain = value.rpartition("@")
    if not at:
        raise InputError(f"{_quoted(address)} is not an email address: it has no '@'")
    if not local or not domain:
        part = "local part (before the '@')" if not local else "domain (after the '@')"
        raise InputError(f"{_quoted(address)} is not an email address: its {part} is empty")
    odd = [ch for ch in value if ch.isspace() or unicodedata.category(ch) in ("Cc", "Cs")]
    if odd:
        raise InputError(
            f"{_quoted(address)} is not an email address: it contains {_describe(odd[0])}"
        )
    try:
        a_label = _a_label(domain)
    except ValueError as error:
        raise InputError(f"the domain of {_quoted(address)} {error}") from None
    return f"{unicodedata.normalize('NFC', local.lower())}@{a_label}"


# A workspace's addresses share a handful of domains, and IDNA2008's checks
# are pure Python: each domain is checked once per process.
@functools.lru_cache(maxsize=4096)
def _a_label(domain: str) -> str:
    """The IDNA2008 A-label form of an NFC domain; ``ValueError`` completing "the domain of X"."""
    dots = [ch for ch in domain if ch in _OTHER_DOTS]
    if dots:
        raise ValueError(f"separates its labels with {_describe(dots[0])}, not '.'")
    # Lower-cased here because IDNA2008 (without the UTS46 mapping, which would
    # also apply compatibility mappings) accepts only lower-case labels.
    domain = unicodedata.normalize("NFC", domain.lower())
    if domain.endswith("."):
        raise ValueError("ends with a dot")
    # IDNA2008 keeps ß and the final sigma as letters of their own, where
    # IDNA2003 and transitional UTS46 map them to ss and to sigma: straße.test is
    # another domain than strasse.test, with perhaps another owner, so its
    # addresses get a key of their own rather than a refusal.
    try:
        return idna.encode(domain, uts46=False).decode("ascii")
    except idna.IDNAError as error:
        raise ValueError(
            f"is not a valid internationalised domain name (IDNA2008): {error}"
        ) from None


def identity_key(value: str) -> str:
    """Return the exact comparison key of a userName or an email value.

    The :func:`email_key` of an email address; anything else (a userName that
    is no address, such as ``jdoe``, or one whose domain IDNA2008 refuses) is
    put in NFC and lower-cased, without compatibility mappings either. Never
    raises: SCIM userNames need not be addresses.
    """
    try:
        return email_key(value)
    except InputError:
        # lower() can leave a letter and a combining mark that NFC composes
        # (a capital with no precomposed lower-case form), so NFC comes last too.
        return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value.strip()).lower())


def email_spellings(address: str) -> tuple[str, ...]:
    """The spellings under which a member with the same :func:`email_key` may be stored.

    A member's userName may spell its domain as a Unicode U-label
    (``bücher.test``) or as its A-label (``xn--bcher-kva.test``), and the
    storage's folded index tells them apart. Looking up every spelling this
    returns finds such a member; the caller then compares exact keys. The
    address itself comes first; spellings that fold alike are given once.
    Raises :class:`~pbidentity.exceptions.InputError` as :func:`email_key` does.
    """
    key = email_key(address)
    local, _, a_label = key.rpartition("@")
    u_label = idna.decode(a_label) if "xn--" in a_label else a_label
    spellings = [address.strip(), key, f"{local}@{u_label}"]
    seen: set[str] = set()
    unique: list[str] = []
    for spelling in spellings:
        if fold(spelling) not in seen:
            seen.add(fold(spelling))
            unique.append(spelling)
    return tuple(unique)


def lookalike_characters(*values: str) -> list[str]:
    """The characters of ``values`` that a lossy fold changes beyond their case, described.

    ``lookalike_characters("ceo@straße.test")`` is
    ``["'ß' (U+00DF LATIN SMALL LETTER SHARP S), which folds to 'ss'"]``:
    what a finding names when an address only looks like another one. Each
    character is named once, in the order met.
    """
    described: list[str] = []
    seen: set[str] = set()
    for value in values:
        for ch in unicodedata.normalize("NFC", value):
            if ch in seen:
                continue
            seen.add(ch)
            folded = fold(ch)
            if folded != ch.lower():
                described.append(f"{_describe(ch)}, which folds to {folded!r}")
    return described


def explain_lookalike(ours: str, theirs: str) -> str:
    """Why two addresses fold alike, in words: at most three characters, named.

    ``explain_lookalike("ceo@straße.test", "ceo@strasse.test")`` is
    ``"'ß' (U+00DF LATIN SMALL LETTER SHARP S), which folds to 'ss'"``.
    """
    characters = lookalike_characters(ours, theirs)
    if not characters:
        # A context-dependent mapping (a final sigma chosen by position)
        # that no single character shows.
        return "characters that only a case-insensitive comparison treats as equal"
    more = len(characters) - 3
    return "; ".join(characters[:3]) + (f"; and {more} more" if more > 0 else "")


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"{ch!r} (U+{ord(ch):04X}{' ' + name if name else ''})"


def _quoted(value: str) -> str:
    """An address as a message shows it: quoted, escaped, at most 200 characters."""
    shown = value if len(value) <= 200 else value[:200] + "..."
    return repr(shown)
