"""Identifiers as the ad platforms want them before hashing: the client-side authority.

The warehouse already normalises emails and phones in SQL before delivery
(switchyard/pipeline/expressions.py). These functions are deliberately independent of that
SQL: an ad-platform client applies them to every identifier right before hashing, so a value
that reaches Meta or Google is normalised by well-kept libraries (email-validator,
phonenumbers) whatever path it came by. A value they cannot make sense of becomes None and
is never hashed: a hash of garbage matches nobody and only hides the problem.

The platforms differ in one trap that matters: Meta hashes phones as digits with the
country code and no "+", Google hashes E.164 with the "+". Hence `meta_phone` and
`google_phone`, and the hash helpers named per platform.

Vendor rules these functions follow:
- Google Ads Customer Match (developers.google.com/google-ads/api/docs/remarketing/
  audience-types/customer-match): trim, lowercase, SHA-256; phones in E.164. Google used to
  ask for the dots before "@" in gmail.com / googlemail.com addresses to be removed; the
  current page says this is no longer required ("since they'll still be accepted"), so no
  provider-specific rewrite is applied: the address is hashed as given, lowercased.
- Meta customer information parameters (developers.facebook.com/docs/marketing-api/
  conversions-api/parameters/customer-information-parameters; the Custom Audiences
  "hashing and normalizing data" table says the same): email trimmed and lowercased;
  phone with symbols, letters and leading zeros removed and the country code always
  included; first/last names lowercase with no punctuation, Roman a-z recommended and
  other letters sent as UTF-8 (documented examples: "Mary" -> "mary", "Valéry" -> "valéry",
  "정" kept as is).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import phonenumbers
from email_validator import EmailNotValidError, validate_email

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def normalise_email(value: str | None) -> str | None:
    """The address trimmed (any whitespace) and lowercased, or None unless it is valid."""
    if value is None:
        return None
    candidate = value.strip().lower()
    if not candidate:
        return None
    try:
        # Syntax only: a hashed audience must not wait on DNS, and an address with a dead
        # domain today can still match an account.
        validate_email(candidate, check_deliverability=False)
    except EmailNotValidError:
        return None
    return candidate


def normalise_phone(value: str | None, default_region: str = "US") -> str | None:
    """E.164 with "+" ("+16505551212"), or None unless it is a valid number.

    National numbers are read in `default_region`; numbers written with "+" or an
    international prefix keep their own country.
    """
    if value is None or not value.strip():
        return None
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not (phonenumbers.is_possible_number(number) and phonenumbers.is_valid_number(number)):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164 if E164.match(e164) else None


def normalise_name(value: str | None) -> str | None:
    """A first or last name as Meta hashes it: lowercase letters only, or None if none.

    Letters of any script are kept (NFC-composed, so "é" is one character and hashes as
    Meta's documented example does); punctuation, digits, symbols and spaces are dropped.
    """
    if value is None:
        return None
    composed = unicodedata.normalize("NFC", value).lower()
    kept = "".join(ch for ch in composed if unicodedata.category(ch)[0] in ("L", "M"))
    return unicodedata.normalize("NFC", kept) or None


def sha256_hex(value: str) -> str:
    """Lowercase hex SHA-256 of the UTF-8 bytes, as both platforms expect."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _require_e164(e164: str) -> str:
    if not E164.match(e164):
        raise ValueError(f"not an E.164 phone number: {e164!r}")
    return e164


def meta_phone(e164: str) -> str:
    """Meta's phone form: digits with the country code, no "+" ("16505551212")."""
    return _require_e164(e164)[1:]


def google_phone(e164: str) -> str:
    """Google's phone form: E.164 with the "+" ("+16505551212")."""
    return _require_e164(e164)


def hash_email(value: str | None) -> str | None:
    """SHA-256 of the normalised address (the same form for Meta and Google)."""
    email = normalise_email(value)
    return None if email is None else sha256_hex(email)


def hash_phone_for_meta(value: str | None, default_region: str = "US") -> str | None:
    e164 = normalise_phone(value, default_region)
    return None if e164 is None else sha256_hex(meta_phone(e164))


def hash_phone_for_google(value: str | None, default_region: str = "US") -> str | None:
    e164 = normalise_phone(value, default_region)
    return None if e164 is None else sha256_hex(google_phone(e164))


def hash_name_for_meta(value: str | None) -> str | None:
    name = normalise_name(value)
    return None if name is None else sha256_hex(name)
