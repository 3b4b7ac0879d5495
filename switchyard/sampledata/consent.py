"""Consent records and suppression-list entries for one block of profiles."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from switchyard.sampledata.columns import IntArray, pick, rows_of, timestamps, weighted
from switchyard.sampledata.profiles import REFERENCE_S, ProfileBlock
from switchyard.sampledata.schema import CONSENTS, SUPPRESSIONS
from switchyard.sampledata.vocab import CONSENT_PURPOSES, CONSENT_SOURCES, SUPPRESSION_KINDS

_PURPOSES = [name for name, _ in CONSENT_PURPOSES]
_GRANT_RATE = np.array([rate for _, rate in CONSENT_PURPOSES])
NO_RECORDS_SHARE = 0.03
SUPPRESSED_SHARE = 0.01


def consents(rng: np.random.Generator, block: ProfileBlock) -> tuple[pa.RecordBatch, IntArray]:
    """(batch, profile row of each consent row); rows are ordered by profile, then purpose.

    A purpose not granted is half the time an explicit `granted = false` row and half the
    time no row at all, because both shapes occur in real consent stores and mean the same.
    """
    size = len(block.signup_s)
    has_records = rng.random(size) >= NO_RECORDS_SHARE
    granted = rng.random((size, len(_PURPOSES))) < _GRANT_RATE
    explicit_refusal = rng.random((size, len(_PURPOSES))) < 0.5
    present = has_records[:, None] & (granted | explicit_refusal)
    row, purpose = np.nonzero(present)  # C order: by profile, then purpose
    signup = block.signup_s[row]
    updated = signup + np.floor((REFERENCE_S - 1 - signup) * rng.random(len(row)))
    source = weighted(rng, [w for _, w in CONSENT_SOURCES], len(row))
    batch = pa.RecordBatch.from_arrays(
        [
            block.profile_id.take(pa.array(row)),
            pick(_PURPOSES, purpose),
            pa.array(granted[row, purpose]),
            timestamps(updated.astype(np.int64)),
            pick([s for s, _ in CONSENT_SOURCES], source),
        ],
        schema=CONSENTS,
    )
    return batch, row.astype(np.int64)


def suppressions(rng: np.random.Generator, block: ProfileBlock) -> tuple[pa.RecordBatch, IntArray]:
    """≈1 % of profiles, mostly by (normalised) email; profile_id when the channel is unusable."""
    size = len(block.signup_s)
    row = rows_of(rng.random(size) < SUPPRESSED_SHARE)
    kind = weighted(rng, [w for _, w, _ in SUPPRESSION_KINDS], len(row))
    email = block.email_normalised.take(pa.array(row))
    phone = block.phone_e164.take(pa.array(row))
    # No usable address to suppress by: fall back to the profile itself.
    kind[(kind == 0) & ~pc.is_valid(email).to_numpy(zero_copy_only=False)] = 2
    kind[(kind == 1) & ~pc.is_valid(phone).to_numpy(zero_copy_only=False)] = 2
    identifier = pc.choose(pa.array(kind), email, phone, block.profile_id.take(pa.array(row)))
    reason_draw = rng.random(len(row))
    reasons = np.empty(len(row), dtype=object)
    for index, (_, _, weights) in enumerate(SUPPRESSION_KINDS):
        mine = kind == index
        cdf = np.cumsum([w for _, w in weights]) / sum(w for _, w in weights)
        slot = np.minimum(np.searchsorted(cdf, reason_draw[mine], side="right"), len(cdf) - 1)
        reasons[mine] = np.array([r for r, _ in weights], dtype=object)[slot]
    signup = block.signup_s[row]
    created = signup + np.floor((REFERENCE_S - 1 - signup) * rng.random(len(row)))
    batch = pa.RecordBatch.from_arrays(
        [
            pick([k for k, _, _ in SUPPRESSION_KINDS], kind),
            identifier,
            pa.array(reasons, type=pa.string()),
            timestamps(created.astype(np.int64)),
        ],
        schema=SUPPRESSIONS,
    )
    return batch, row
