"""The profiles of one block: identifiers, traits, commerce and timeline columns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from switchyard.sampledata import people
from switchyard.sampledata.columns import (
    ALNUM,
    LOWER_ALNUM,
    BoolArray,
    FloatArray,
    IntArray,
    Pool,
    concat,
    ints_to_str,
    null_where,
    pick,
    random_tokens,
    scatter,
    shares,
    timestamps,
    weighted,
)
from switchyard.sampledata.phones import phones
from switchyard.sampledata.schema import PROFILES
from switchyard.sampledata.vocab import COUNTRIES, INVALID_PHONES, PLANS

# The data's "now": fixed, never the wall clock, so a seed always yields the same bytes.
REFERENCE_AT = datetime(2026, 11, 1)
HISTORY = timedelta(days=3 * 365)
REFERENCE_S = int((REFERENCE_AT - datetime(1970, 1, 1)).total_seconds())
_HISTORY_S = int(HISTORY.total_seconds())

_CITIES = Pool([c.cities for c in COUNTRIES])
# By plan (free, starter, pro, enterprise): who never ordered, and how much buyers spend.
_NO_ORDER_SHARE = np.array([0.35, 0.10, 0.05, 0.02])
_SPEND_FACTOR = np.array([0.55, 1.0, 1.7, 3.5])
# Median buyer spend ≈ 330 before the plan factor; puts ≈27 % of all profiles at ≥ 500.
_SPEND_MU, _SPEND_SIGMA = 5.80, 1.25


# Separate random streams per concern: adding a column to one doesn't shift the others.
class Stream:
    IDS, NAMES, EMAIL, PHONE, COMMERCE, TIMELINE, CONSENT, SUPPRESSION = range(8)


@dataclass(frozen=True, slots=True)
class ProfileBlock:
    batch: pa.RecordBatch
    profile_id: pa.StringArray
    signup_s: IntArray
    email_normalised: pa.Array
    phone_e164: pa.Array


def rng_for(seed: int, block: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, block, stream])


def build_profiles(seed: int, block: int, start: int, size: int, id_width: int) -> ProfileBlock:
    """Profiles start+1 … start+size; every value depends only on (seed, block, position)."""
    position = np.arange(start, start + size, dtype=np.int64)
    ids = rng_for(seed, block, Stream.IDS)
    profile_id = concat("prf_", _zero_pad(position + 1, id_width))
    country = weighted(ids, [c.weight for c in COUNTRIES], size)
    names = people.names(rng_for(seed, block, Stream.NAMES), people.locales(ids, country))
    mails = people.emails(
        rng_for(seed, block, Stream.EMAIL),
        names,
        country,
        position,
        offset=(seed * 2_654_435_761) % 10**id_width,
        modulus=10**id_width,
    )
    phone, e164, phone_ok = _phones(rng_for(seed, block, Stream.PHONE), country)
    commerce = _commerce(rng_for(seed, block, Stream.COMMERCE), size)
    timeline = _timeline(rng_for(seed, block, Stream.TIMELINE), commerce.orders > 0)
    columns = {
        "profile_id": profile_id,
        "user_id": null_where(
            random_tokens(ids, size, "usr_", 12, LOWER_ALNUM), ids.random(size) < 0.05
        ),
        "email": mails.email,
        "phone": phone,
        "crm_id": null_where(random_tokens(ids, size, "003", 15, ALNUM), ids.random(size) < 0.4),
        "first_name": names.first,
        "last_name": names.last,
        "country": pick([c.code for c in COUNTRIES], country),
        "city": _CITIES.take(_CITIES.indices(ids, country)),
        "plan": null_where(pick([p for p, _ in PLANS], commerce.plan), commerce.plan_missing),
        "lifetime_value": pa.array(commerce.lifetime_value),
        "orders_count": pa.array(commerce.orders.astype(np.int32)),
        "signup_at": timestamps(timeline.signup),
        "last_order_at": timestamps(timeline.last_order, commerce.orders == 0),
        "last_seen_at": timestamps(timeline.last_seen),
        "churn_risk": pa.array(_churn(ids, timeline.last_seen, commerce.orders)),
        "is_employee": pa.array(ids.random(size) < 0.003),
        "updated_at": timestamps(timeline.updated),
    }
    batch = pa.RecordBatch.from_arrays(list(columns.values()), schema=PROFILES)
    return ProfileBlock(
        batch=batch,
        profile_id=profile_id,
        signup_s=timeline.signup,
        email_normalised=mails.normalised,
        phone_e164=null_where(e164, ~phone_ok),
    )


def _zero_pad(values: IntArray, width: int) -> pa.StringArray:
    return pc.utf8_lpad(ints_to_str(values), width, "0")


def _phones(rng: np.random.Generator, country: IntArray) -> tuple[pa.Array, pa.Array, BoolArray]:
    """≈10 % NULL, ≈2 % not a phone number at all, the rest in some real-world format."""
    typed, e164 = phones(rng, country)
    kind = shares(rng, len(country), (0.10, 0.02))
    junk_rows = np.flatnonzero(kind == 1)
    junk = pick(INVALID_PHONES, rng.integers(0, len(INVALID_PHONES), len(junk_rows)))
    return null_where(scatter(typed, junk_rows, junk), kind == 0), e164, kind == 2


@dataclass(frozen=True, slots=True)
class _Commerce:
    plan: IntArray
    plan_missing: BoolArray
    lifetime_value: FloatArray
    orders: IntArray


def _commerce(rng: np.random.Generator, size: int) -> _Commerce:
    plan = weighted(rng, [w for _, w in PLANS], size)
    buyer = rng.random(size) >= _NO_ORDER_SHARE[plan]
    spend = np.exp(rng.normal(_SPEND_MU, _SPEND_SIGMA, size)) * _SPEND_FACTOR[plan]
    lifetime_value = np.where(buyer, np.round(spend, 2), 0.0)
    # Orders follow spend through a per-customer basket size, so the two correlate.
    basket = np.exp(rng.normal(np.log(70.0), 0.45, size))
    orders = np.where(buyer, np.clip(np.rint(spend / basket), 1, 5_000), 0).astype(np.int64)
    return _Commerce(plan, rng.random(size) < 0.005, lifetime_value, orders)


@dataclass(frozen=True, slots=True)
class _Timeline:
    signup: IntArray
    last_order: IntArray
    last_seen: IntArray
    updated: IntArray


def _timeline(rng: np.random.Generator, ordered: BoolArray) -> _Timeline:
    """Epoch seconds, all in the three years before REFERENCE_AT, in causal order."""
    size = len(ordered)
    latest = REFERENCE_S - 1
    # Exponent > 1 puts more signups in recent months, as a growing business has.
    signup = latest - np.floor(_HISTORY_S * rng.random(size) ** 1.4).astype(np.int64)
    last_order = _between(rng, signup, latest, 0.5)
    anchor = np.where(ordered, last_order, signup)
    last_seen = _between(rng, anchor, latest, 0.35)
    updated = _between(rng, last_seen, latest, 1.0)
    return _Timeline(signup, last_order, last_seen, updated)


def _between(rng: np.random.Generator, low: IntArray, high: int, bias: float) -> IntArray:
    """A second in [low, high]; bias < 1 leans towards high (recent)."""
    return low + np.floor((high - low) * rng.random(len(low)) ** bias).astype(np.int64)


def _churn(rng: np.random.Generator, last_seen: IntArray, orders: IntArray) -> FloatArray:
    idle_days = (REFERENCE_S - last_seen) / 86_400
    risk: FloatArray = 0.75 * (1 - np.exp(-idle_days / 120)) + 0.25 * rng.random(len(orders))
    risk -= np.where(orders > 5, 0.1, 0.0)
    return np.clip(risk, 0.0, 1.0).round(4)
