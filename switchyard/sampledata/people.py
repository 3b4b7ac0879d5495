"""Names and email addresses, including the mess a real CDP accumulates.

Email categories per row (one uniform draw, so they never overlap):
NULL 3 % · invalid 2 % · valid but upper case / padded 5 % · another profile's address 1 % ·
clean otherwise. Clean addresses are unique: their local part ends in a number that is a
bijection of the profile's position, so the only shared addresses are the planted duplicates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from switchyard.sampledata.columns import (
    BoolArray,
    IntArray,
    Pool,
    concat,
    ints_to_str,
    null_where,
    pick,
    rows_of,
    scatter,
    shares,
    weighted,
)
from switchyard.sampledata.vocab import (
    COMPANY_MAIL_DOMAINS,
    COUNTRIES,
    FIRST_NAMES,
    GLOBAL_MAIL_DOMAINS,
    LAST_NAMES,
    LONG_NAMES,
    split_name,
)

LOCALES = tuple(FIRST_NAMES)
_LOCALE_INDEX = {code: i for i, code in enumerate(LOCALES)}


def _pools(names: dict[str, tuple[str, ...]]) -> tuple[Pool, Pool]:
    split = [[split_name(entry) for entry in names[loc]] for loc in LOCALES]
    return Pool([[d for d, _ in g] for g in split]), Pool([[a for _, a in g] for g in split])


FIRST_DISPLAY, FIRST_ASCII = _pools(FIRST_NAMES)
LAST_DISPLAY, LAST_ASCII = _pools(LAST_NAMES)
_LOCAL_DOMAINS = Pool([c.mail_domains for c in COUNTRIES])

EMAIL_NULL, EMAIL_INVALID, EMAIL_CASED, EMAIL_DUPLICATE, EMAIL_CLEAN = range(5)
_EMAIL_CUTS = (0.03, 0.02, 0.05, 0.01)
# The unique number in a clean local part: (A·position + offset) mod 10**width is a bijection
# because A is coprime with 10.
_A = 3_141_593

Variant = Callable[[np.random.Generator, pa.StringArray], pa.StringArray]


@dataclass(frozen=True, slots=True)
class Names:
    first: pa.Array
    last: pa.Array
    first_ascii: pa.StringArray
    last_ascii: pa.StringArray
    first_display: pa.StringArray
    last_display: pa.StringArray


@dataclass(frozen=True, slots=True)
class Emails:
    email: pa.Array
    # Trimmed + lower-cased address where the raw value is a valid one, else NULL.
    normalised: pa.Array
    category: IntArray


def locales(rng: np.random.Generator, country: IntArray) -> IntArray:
    draw = rng.random(len(country))
    out = np.zeros(len(country), dtype=np.int64)
    for index, spec in enumerate(COUNTRIES):
        rows = country == index
        weights = np.array([w for _, w in spec.locales], dtype=np.float64)
        slot = np.searchsorted(np.cumsum(weights) / weights.sum(), draw[rows], side="right")
        codes = np.array([_LOCALE_INDEX[code] for code, _ in spec.locales], dtype=np.int64)
        out[rows] = codes[np.minimum(slot, len(codes) - 1)]
    return out


def names(rng: np.random.Generator, locale: IntArray) -> Names:
    """First / last names with ≈2 % NULL each and ≈0.25 % each longer than 80 characters."""
    fi = FIRST_DISPLAY.indices(rng, locale)
    li = LAST_DISPLAY.indices(rng, locale)
    first_display, last_display = FIRST_DISPLAY.take(fi), LAST_DISPLAY.take(li)
    return Names(
        first=_messy_name(rng, first_display),
        last=_messy_name(rng, last_display),
        first_ascii=FIRST_ASCII.take(fi),
        last_ascii=LAST_ASCII.take(li),
        first_display=first_display,
        last_display=last_display,
    )


def _messy_name(rng: np.random.Generator, names: pa.StringArray) -> pa.Array:
    kind = shares(rng, len(names), (0.02, 0.0025))
    long_rows = rows_of(kind == 1)
    long = pick(LONG_NAMES, rng.integers(0, len(LONG_NAMES), len(long_rows)))
    return null_where(scatter(names, long_rows, long), kind == 0)


def emails(
    rng: np.random.Generator,
    people: Names,
    country: IntArray,
    position: IntArray,
    offset: int,
    modulus: int,
) -> Emails:
    n = len(country)
    number = ints_to_str((_A * position + offset) % modulus)
    base = concat(_local_part(rng, people, number), "@", _domain(rng, country))
    category = shares(rng, n, _EMAIL_CUTS)
    source = _duplicate_sources(rng, category)
    category[(category == EMAIL_DUPLICATE) & (source < 0)] = EMAIL_CLEAN
    email = _override(base, category == EMAIL_INVALID, _invalid, rng)
    email = _override(email, category == EMAIL_CASED, _cased, rng)
    dup_rows = rows_of(category == EMAIL_DUPLICATE)
    copied = _cased(rng, base.take(pa.array(source[dup_rows])), keep=6.0)
    email = null_where(scatter(email, dup_rows, copied), category == EMAIL_NULL)
    valid = np.isin(category, (EMAIL_CASED, EMAIL_DUPLICATE, EMAIL_CLEAN))
    normalised = null_where(pc.utf8_lower(pc.utf8_trim_whitespace(email)), ~valid)
    return Emails(email=email, normalised=normalised, category=category)


def _local_part(rng: np.random.Generator, p: Names, number: pa.StringArray) -> pa.StringArray:
    f, last = p.first_ascii, p.last_ascii
    f0, l0 = pc.utf8_slice_codeunits(f, 0, 1), pc.utf8_slice_codeunits(last, 0, 1)
    patterns = (
        (concat(f, ".", last, number), 34),
        (concat(f, last, number), 14),
        (concat(f0, last, number), 14),
        (concat(f, "_", last, number), 8),
        (concat(f, number), 12),
        (concat(f0, ".", l0, number), 6),
        (concat(last, ".", f, number), 12),
    )
    chosen = pc.choose(
        pa.array(weighted(rng, [w for _, w in patterns], len(f))), *[p for p, _ in patterns]
    )
    # A few people keep their accents (or script) in the address: RFC 6531 local parts.
    unicode_local = pc.utf8_lower(concat(p.first_display, ".", p.last_display, number))
    unicode_local = pc.replace_substring(unicode_local, " ", "")
    return pc.if_else(pa.array(rng.random(len(f)) < 0.01), unicode_local, chosen)


def _domain(rng: np.random.Generator, country: IntArray) -> pa.StringArray:
    n = len(country)
    shared = pick(
        [d for d, _ in GLOBAL_MAIL_DOMAINS], weighted(rng, [w for _, w in GLOBAL_MAIL_DOMAINS], n)
    )
    local = _LOCAL_DOMAINS.take(_LOCAL_DOMAINS.indices(rng, country))
    company = pick(COMPANY_MAIL_DOMAINS, rng.integers(0, len(COMPANY_MAIL_DOMAINS), n))
    kind = weighted(rng, (72, 10, 18), n)
    return pc.choose(pa.array(kind), shared, local, company)


def _duplicate_sources(rng: np.random.Generator, category: IntArray) -> IntArray:
    """For each duplicate row, an earlier clean row of the block to copy; -1 if none.

    Earlier, so a block cut short for the last profiles never loses a duplicate's source.
    """
    eligible = rows_of(np.isin(category, (EMAIL_CASED, EMAIL_CLEAN)))
    if len(eligible) == 0:
        return np.full(len(category), -1, dtype=np.int64)
    before = np.searchsorted(eligible, np.arange(len(category)))
    draw = (rng.random(len(category)) * before).astype(np.int64)
    source = np.where(before > 0, eligible[np.minimum(draw, len(eligible) - 1)], -1)
    return np.where(category == EMAIL_DUPLICATE, source, -1)


def _override(
    values: pa.Array, mask: BoolArray, variant: Variant, rng: np.random.Generator
) -> pa.Array:
    rows = rows_of(mask)
    return scatter(values, rows, variant(rng, values.take(pa.array(rows))))


def _invalid(rng: np.random.Generator, valid: pa.StringArray) -> pa.StringArray:
    variants = (
        pc.replace_substring(valid, "@", ""),
        pc.replace_substring(valid, "@", "@@"),
        concat(valid, "."),
        pc.replace_substring(valid, "@", " @"),
        pa.repeat(pa.scalar("n/a"), len(valid)),
    )
    return pc.choose(pa.array(rng.integers(0, len(variants), len(valid))), *variants)


def _cased(rng: np.random.Generator, valid: pa.StringArray, keep: float = 0.0) -> pa.StringArray:
    """Valid address in another case or with padding; keep = weight of leaving it as is."""
    variants = (
        valid,
        pc.utf8_upper(valid),
        pc.utf8_capitalize(valid),
        pc.utf8_title(valid),
        concat(" ", valid),
        concat(valid, " "),
        concat("\t", pc.utf8_capitalize(valid), " "),
    )
    weights = [keep] + [1.0] * (len(variants) - 1)
    return pc.choose(pa.array(weighted(rng, weights, len(valid))), *variants)
