"""Identifier normalisation and hashing: properties over generated input, plus the vendors'
own documented examples (which pin the exact bytes that get hashed)."""

from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchyard.identity.normalise import (
    google_phone,
    hash_email,
    hash_name_for_meta,
    hash_phone_for_google,
    hash_phone_for_meta,
    meta_phone,
    normalise_email,
    normalise_name,
    normalise_phone,
    sha256_hex,
)

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
REGIONS = ["US", "CA", "GB", "DE", "FR", "ES", "IT", "NL", "AU", "BR", "IN", "JP", "MX", "KR"]
WHITESPACE = st.text(alphabet=" \t\n\r\f\v\u00a0", max_size=4)


@st.composite
def valid_numbers(draw: st.DrawFn) -> tuple[str, phonenumbers.PhoneNumber]:
    """A valid number of a region: the region's example number with its last digits varied."""
    region = draw(st.sampled_from(REGIONS))
    kind = draw(
        st.sampled_from(
            [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]
        )
    )
    example = phonenumbers.example_number_for_type(region, kind)
    assert example is not None
    national = phonenumbers.national_significant_number(example)
    tail = draw(st.text(alphabet="0123456789", min_size=2, max_size=2))
    candidate = phonenumbers.parse(national[:-2] + tail, region)
    if not phonenumbers.is_valid_number(candidate):
        candidate = example
    return region, candidate


# --- emails -------------------------------------------------------------------------------


@given(st.emails(), WHITESPACE, WHITESPACE)
def test_email_is_case_and_whitespace_invariant(email: str, before: str, after: str) -> None:
    normal = normalise_email(email)
    assert normal is not None
    assert normalise_email(before + email.upper() + after) == normal
    assert normalise_email(email.swapcase()) == normal
    assert normal == normal.strip().lower()


@given(st.one_of(st.emails(), st.text(max_size=40)))
def test_email_normalisation_is_idempotent(value: str) -> None:
    once = normalise_email(value)
    assert normalise_email(once) == once


@pytest.mark.parametrize(
    "value", [None, "", "   ", "\t\n", "no-at-sign", "a@", "@example.com", "a b@example.com"]
)
def test_missing_or_invalid_email_is_none(value: str | None) -> None:
    assert normalise_email(value) is None
    assert hash_email(value) is None


def test_email_keeps_the_address_as_given() -> None:
    # No provider rewrites: Google no longer requires gmail dots removed, Meta never did.
    assert normalise_email("\t Jane.Doe+News@GMail.com \n") == "jane.doe+news@gmail.com"


# --- phones -------------------------------------------------------------------------------


@settings(max_examples=200)
@given(valid_numbers(), st.sampled_from(["-", " ", ".", "", "  "]))
def test_a_number_written_any_way_normalises_to_one_e164(
    drawn: tuple[str, phonenumbers.PhoneNumber], sep: str
) -> None:
    region, number = drawn
    fmt = phonenumbers.PhoneNumberFormat
    expected = phonenumbers.format_number(number, fmt.E164)
    national = phonenumbers.format_number(number, fmt.NATIONAL)
    digits = phonenumbers.national_significant_number(number)
    spaced = sep.join([digits[:3], digits[3:6], digits[6:]])
    writings = [
        national,
        f"({national})" if region == "US" else national,
        phonenumbers.format_number(number, fmt.INTERNATIONAL),
        phonenumbers.format_number(number, fmt.RFC3966),
        expected,
        f"  {expected}\n",
        f"+{number.country_code}{sep}{spaced}",
    ]
    for written in writings:
        assert normalise_phone(written, region) == expected, written
    # Written with its country code, a number keeps its country whatever the default region.
    assert normalise_phone(expected, "US" if region != "US" else "GB") == expected


@given(st.text(alphabet="0123456789+-() .", max_size=20), st.sampled_from(REGIONS))
def test_every_phone_output_is_e164_and_idempotent(value: str, region: str) -> None:
    once = normalise_phone(value, region)
    if once is not None:
        assert E164.match(once)
    assert normalise_phone(once, region) == once


@pytest.mark.parametrize("value", [None, "", "  ", "12", "not a number", "+1 000 000 0000"])
def test_invalid_phone_is_none(value: str | None) -> None:
    assert normalise_phone(value) is None
    assert hash_phone_for_meta(value) is None
    assert hash_phone_for_google(value) is None


def test_us_national_and_uk_trunk_zero() -> None:
    assert normalise_phone("(650) 555-1212") == "+16505551212"
    assert normalise_phone("1-650-555-1212") == "+16505551212"
    assert normalise_phone("020 7031 3000", "GB") == "+442070313000"
    assert normalise_phone("00 44 20 7031 3000", "DE") == "+442070313000"


# --- per-platform phone forms and hashes ----------------------------------------------------


@given(valid_numbers())
def test_meta_and_google_phone_hashes_differ_for_the_same_number(
    drawn: tuple[str, phonenumbers.PhoneNumber],
) -> None:
    region, number = drawn
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    e164 = normalise_phone(national, region)
    assert e164 is not None
    assert meta_phone(e164) == e164[1:] and meta_phone(e164).isdigit()
    assert google_phone(e164) == e164
    meta, google = hash_phone_for_meta(national, region), hash_phone_for_google(national, region)
    assert meta is not None and google is not None
    assert meta != google
    assert meta == sha256_hex(e164.lstrip("+")) and google == sha256_hex(e164)


@pytest.mark.parametrize("bad", ["16505551212", "+0123456789", "+1", "+1 650 555 1212"])
def test_platform_phone_forms_refuse_what_is_not_e164(bad: str) -> None:
    with pytest.raises(ValueError):
        meta_phone(bad)
    with pytest.raises(ValueError):
        google_phone(bad)


@given(st.text())
def test_hashes_are_64_lowercase_hex(value: str) -> None:
    assert HEX64.match(sha256_hex(value))


def test_known_hashes() -> None:
    assert (
        sha256_hex("test@example.com")
        == "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
    )
    assert hash_email("  Test@Example.com\n") == sha256_hex("test@example.com")
    # Meta's documented examples (customer information parameters).
    assert (
        hash_email("John_Smith@gmail.com")
        == "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
    )
    assert (
        hash_phone_for_meta("(650)555-1212")
        == "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
    )
    assert (
        hash_name_for_meta("Mary")
        == "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"
    )
    assert (
        hash_name_for_meta("Valéry")
        == "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"
    )
    assert (
        hash_name_for_meta("정")
        == "8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14"
    )


# --- names (Meta fn / ln) -------------------------------------------------------------------


def test_names_drop_punctuation_digits_and_spaces() -> None:
    assert normalise_name("  O'Brien-Smith ") == "obriensmith"
    assert normalise_name("Mary Ann") == "maryann"
    # A decomposed "é" (e + combining accent) hashes like the composed one.
    assert normalise_name("Vale\u0301ry") == "valéry"
    assert normalise_name(" .-' 42") is None
    assert normalise_name(None) is None


@given(st.text(max_size=30), WHITESPACE)
def test_name_normalisation_is_idempotent_and_trim_invariant(value: str, pad: str) -> None:
    once = normalise_name(value)
    assert normalise_name(once) == once
    assert normalise_name(pad + value + pad) == once
