"""Phone numbers as people type them: E.164, national formats with spaces, dashes, dots."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from switchyard.sampledata.columns import DIGITS, IntArray, from_byte_matrix, random_chars
from switchyard.sampledata.vocab import COUNTRIES

_WIDTH = max(len(t) for c in COUNTRIES for t in c.phone_formats)
_MAX_DIGITS = max(c.phone_length for c in COUNTRIES)
_MAX_LEAD = max(len(c.phone_lead) for c in COUNTRIES)


def render(template: str, national: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Fill each "N" of the template with the next national digit, for every row at once."""
    layout = np.frombuffer(template.encode("ascii"), dtype=np.uint8)
    slots = np.flatnonzero(layout == ord("N"))
    if len(slots) != national.shape[1]:
        raise ValueError(f"template {template!r} needs {len(slots)} digits")
    out = np.tile(layout, (national.shape[0], 1))
    out[:, slots] = national
    return out


def phones(rng: np.random.Generator, country: IntArray) -> tuple[pa.StringArray, pa.StringArray]:
    """(phone as typed, the same number in E.164) for each row's country index."""
    n = len(country)
    # Draw everything up front so a row's number depends on its own draws, not group sizes.
    digits = random_chars(rng, n, _MAX_DIGITS, DIGITS)
    lead = rng.random((n, _MAX_LEAD))
    fmt = rng.random(n)
    typed = np.zeros((n, _WIDTH), dtype=np.uint8)
    e164 = np.zeros((n, _WIDTH), dtype=np.uint8)
    for index, spec in enumerate(COUNTRIES):
        rows = np.flatnonzero(country == index)
        national = digits[rows, : spec.phone_length]
        for pos, allowed in enumerate(spec.phone_lead):
            choices = np.frombuffer(allowed.encode("ascii"), dtype=np.uint8)
            national[:, pos] = choices[(lead[rows, pos] * len(choices)).astype(np.int64)]
        chosen = (fmt[rows] * len(spec.phone_formats)).astype(np.int64)
        for fi, template in enumerate(spec.phone_formats):
            sel = chosen == fi
            typed[rows[sel], : len(template)] = render(template, national[sel])
        e164[rows, : len(spec.phone_formats[0])] = render(spec.phone_formats[0], national)
    return from_byte_matrix(typed), from_byte_matrix(e164)
