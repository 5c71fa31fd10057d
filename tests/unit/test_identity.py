"""The exact identity key: which spellings are one address, which only look alike, which none."""

from __future__ import annotations

import unicodedata

import idna
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from pbidentity.domain import fold
from pbidentity.exceptions import InputError
from pbidentity.identity import email_key
from pbidentity.identity import email_spellings
from pbidentity.identity import explain_lookalike
from pbidentity.identity import identity_key
from pbidentity.identity import lookalike_characters
from pbidentity.linking import LinkPolicy


def full_width(text: str) -> str:
    """The same ASCII text typed with full-width forms (U+FF01..U+FF5E)."""
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Jane@ACME.test", "jane@acme.test"),
        ("  jane@acme.test\t", "jane@acme.test"),
        ("jane@BÜCHER.test", "jane@bücher.test"),
        ("jane@bücher.test", "jane@xn--bcher-kva.test"),
        ("jane@XN--BCHER-KVA.TEST", "jane@Bücher.Test"),
        ("jane@bu\u0308cher.test", "jane@bücher.test"),  # NFC composes the umlaut
        ("Ren\u0065\u0301@acme.test", "rené@acme.test"),
        ("ΟΔΟΣ@acme.test", "οδος@acme.test"),  # lower() picks the final sigma at the end
        ("STRAẞE@acme.test", "straße@acme.test"),  # capital sharp s lower-cases to ß
        ("ceo@STRAẞE.test", "ceo@xn--strae-oqa.test"),  # and ß is a letter of its own in IDNA2008
        ("a@b@acme.test", "A@B@ACME.test"),  # split at the last @
        # Canonical singletons: NFC itself makes the Kelvin sign a K and the
        # Angstrom sign an A with ring; they are one character, not look-alikes.
        ("\u212aelvin@acme.test", "kelvin@acme.test"),
        ("\u212bngstr\u00f6m@acme.test", "\u00e5ngstr\u00f6m@acme.test"),
    ],
)
def test_spellings_of_one_address_have_one_key(one: str, other: str) -> None:
    """Case, surrounding whitespace, NFC and the A-label or U-label domain make no difference."""
    assert email_key(one) == email_key(other)


@pytest.mark.parametrize(
    ("arriving", "member"),
    [
        ("ceo@straße.test", "ceo@strasse.test"),  # ß is not ss
        ("ceo@acme.test", "ceo@acme.test".replace("c", "\u0441")),  # Cyrillic es: no fold either
        ("\ufb01nance@acme.test", "finance@acme.test"),  # the fi ligature
        (f"{full_width('finance')}@acme.test", "finance@acme.test"),
        ("\u0131nfo@acme.test", "info@acme.test"),  # Turkish dotless i
        ("\u0130nfo@acme.test", "info@acme.test"),  # Turkish dotted capital I
        ("οδοσ@acme.test", "οδος@acme.test"),  # final sigma
        ("ceo@acme.test", "ceo\u200b@acme.test"),  # zero-width space
    ],
)
def test_look_alikes_have_other_keys(arriving: str, member: str) -> None:
    """What only a lossy fold makes equal, or nothing makes equal, keeps apart."""
    assert email_key(arriving) != email_key(member)


def test_the_folds_look_alikes_are_named() -> None:
    """The characters that fold beyond their case are described, each once."""
    assert lookalike_characters("ceo@straße.test", "ceo@strasse.test") == [
        "'ß' (U+00DF LATIN SMALL LETTER SHARP S), which folds to 'ss'"
    ]
    assert explain_lookalike("\ufb01nance@acme.test", "finance@acme.test") == (
        "'\ufb01' (U+FB01 LATIN SMALL LIGATURE FI), which folds to 'fi'"
    )
    wide = explain_lookalike(f"{full_width('finance')}@acme.test", "finance@acme.test")
    assert wide.startswith("'\uff46' (U+FF46 FULLWIDTH LATIN SMALL LETTER F), which folds to 'f'")
    assert wide.endswith("; and 3 more")  # f, i, n named; a, c, e counted
    assert lookalike_characters("Jane@ACME.test") == []  # case alone is no look-alike
    assert explain_lookalike("ΟΔΟΣ@x.test", "οδοσ@x.test") == (
        "characters that only a case-insensitive comparison treats as equal"
    )


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("jane", "has no '@'"),
        ("@acme.test", "its local part (before the '@') is empty"),
        ("jane@", "its domain (after the '@') is empty"),
        ("ja ne@acme.test", "' ' (U+0020 SPACE)"),
        ("jane\x00@acme.test", "U+0000"),
        (f"jane@{full_width('acme')}.test", "not a valid internationalised domain name"),
        ("jane@acme\uff0etest", "U+FF0E FULLWIDTH FULL STOP"),
        ("jane@acme\u3002test", "U+3002 IDEOGRAPHIC FULL STOP"),
        ("jane@acme.test.", "ends with a dot"),
        ("jane@acme..test", "Empty Label"),
        ("jane@\ufb01nance.test", "not a valid internationalised domain name"),
        ("jane@under_score.test", "not a valid internationalised domain name"),
        ("jane@-acme.test", "hyphen"),
        ("jane@xn--zz.test", "not a valid internationalised domain name"),
        ("jane@[192.0.2.1]", "not a valid internationalised domain name"),
    ],
)
def test_what_is_no_address_has_no_key_and_says_why(address: str, reason: str) -> None:
    """No @, empty parts, spaces, controls, a domain IDNA2008 refuses, another dot: refused."""
    with pytest.raises(InputError) as raised:
        email_key(address)
    assert reason in str(raised.value)


def test_an_identity_key_is_the_email_key_or_the_value_lower_cased() -> None:
    """A userName that is no address still compare exactly: lower-cased, nothing folded."""
    assert identity_key("Jane@BÜCHER.test") == "jane@xn--bcher-kva.test"
    assert identity_key(" JDoe ") == "jdoe"
    assert identity_key("Stra\u00dfe") != identity_key("Strasse")
    assert identity_key(f"ceo@{full_width('acme')}.test") != identity_key("ceo@acme.test")


def test_spellings_give_each_folded_spelling_once() -> None:
    """The address as sent, its A-label spelling and its U-label spelling, without repeats."""
    assert email_spellings("jane@acme.test") == ("jane@acme.test",)
    assert email_spellings(" Jane@BÜCHER.test ") == ("Jane@BÜCHER.test", "jane@xn--bcher-kva.test")
    assert email_spellings("jane@xn--bcher-kva.test") == (
        "jane@xn--bcher-kva.test",
        "jane@bücher.test",
    )


# Properties. The alphabet mixes ASCII with the characters that case mapping,
# normalisation and folding treat specially, and anything else Unicode has.
_SPECIAL = [
    *"aAzZsSiIkKeE0-._+",
    "ß",
    "ẞ",
    "\ufb01",
    "\ufb00",
    "\uff46",
    "\uff21",
    "\u0130",
    "\u0131",
    "\u03a3",
    "\u03c3",
    "\u03c2",
    "é",
    "\u0301",
    "\u0308",
    "\u01c4",
    "\u01c5",
    "\u01c6",
    "ü",
    "Ü",
    "\u0307",
    "\u212a",
    "\u2126",
    "\u212b",
    "Å",
    "\u017f",
]
_CHARS = st.sampled_from(_SPECIAL) | st.characters(codec="utf-8")
_PART = st.lists(_CHARS, min_size=1, max_size=6).map("".join)
ADDRESSES = st.builds(
    lambda local, labels: f"{local}@{'.'.join(labels)}",
    _PART,
    st.lists(_PART, min_size=1, max_size=3),
)

# Addresses whose domain IDNA2008 accepts, mostly: letters with and without
# precomposed accents, a sharp s, a final sigma, capitals to lower-case.
_LABEL = st.lists(st.sampled_from([*"abzAZ09", "ü", "Ü", "ß", "é", "ö", "ñ", "\u03c2", "\u0131"]))
VALID = st.builds(
    lambda local, labels: f"{local}@{'.'.join(labels)}",
    _PART,
    st.lists(_LABEL.filter(bool).map("".join), min_size=1, max_size=3),
)


def _key(address: str) -> str | None:
    try:
        return email_key(address)
    except InputError:
        return None


def _documented_rule(address: str) -> tuple[str, str]:
    """The rule as the docs state it, written out a second way: NFC, lower(), IDNA2008 U-label."""
    local, _, domain = unicodedata.normalize("NFC", address.strip()).rpartition("@")
    return local.lower(), idna.decode(idna.encode(domain.lower(), uts46=False))


@st.composite
def respellings(draw: st.DrawFn) -> tuple[str, str]:
    """An address with a key, and the same address spelt another way the rule allows.

    Decomposed (NFD), ASCII letters in another case, the domain as its A-label
    or its U-label, whitespace around it.
    """
    address = draw(VALID.filter(lambda a: _key(a) is not None))
    local, _, domain = address.rpartition("@")
    if draw(st.booleans()):
        local = unicodedata.normalize("NFD", local)
    local = "".join(ch.upper() if ch.isascii() and draw(st.booleans()) else ch for ch in local)
    spelt = draw(st.sampled_from(["as given", "a-label", "u-label"]))
    if spelt != "as given":
        domain = unicodedata.normalize("NFC", domain.lower())
        a_label = idna.encode(domain, uts46=False).decode("ascii")
        domain = a_label if spelt == "a-label" else idna.decode(a_label)
    padding = draw(st.sampled_from(["", " ", "\t"]))
    return address, f"{padding}{local}@{domain}{padding}"


@settings(max_examples=200)
@given(respellings())
def test_every_respelling_has_the_same_key(pair: tuple[str, str]) -> None:
    """NFD, ASCII case, the A-label or U-label domain and whitespace never change the key."""
    one, other = pair
    assert email_key(one) == email_key(other)


@settings(max_examples=200)
@given(st.one_of(respellings(), st.tuples(ADDRESSES, ADDRESSES)))
def test_equal_keys_mean_equal_under_the_documented_rule(pair: tuple[str, str]) -> None:
    """Two addresses with one key have the same lower-cased local part and the same domain."""
    one, other = pair
    key = _key(one)
    if key is None or key != _key(other):
        return
    assert _documented_rule(one) == _documented_rule(other)


@settings(max_examples=200)
@given(st.one_of(VALID, ADDRESSES))
def test_a_key_is_its_own_key_and_the_folded_lookup_finds_every_spelling(address: str) -> None:
    """The key is stable, and looking up its spellings in a folded index finds the address.

    The storage finds candidates through fold(): any address with the same key
    as the sign-in must be among them, or an exact member would be missed.
    """
    key = _key(address)
    if key is None:
        return
    assert email_key(key) == key
    assert fold(address.strip()) in {fold(spelling) for spelling in email_spellings(key)}


@settings(max_examples=200)
@given(st.one_of(VALID, ADDRESSES))
def test_a_key_is_lower_case_and_nfc(address: str) -> None:
    """A key's local part is lower-cased and the whole key is in NFC."""
    key = _key(address)
    if key is None:
        return
    local = key.rpartition("@")[0]
    assert local == local.lower()
    assert unicodedata.is_normalized("NFC", key)


_ASCII = st.lists(st.sampled_from([*"aAbB@.-_+ \t", "xn--"]), max_size=10).map("".join)


@settings(max_examples=300)
@given(_ASCII, _ASCII)
def test_for_ascii_the_exact_key_and_the_fold_agree(one: str, other: str) -> None:
    """LinkPolicy.exact skips IDNA for ASCII: there, equal folds are equal keys and back."""
    folded_equal = fold(one.strip()) == fold(other.strip())
    assert folded_equal == (identity_key(one) == identity_key(other))
    assert LinkPolicy().exact(one) == LinkPolicy().normalise(one)
    assert LinkPolicy().exact(one) == identity_key(one)
