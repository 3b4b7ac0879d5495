"""Deterministic sample CDP data, generated in fixed blocks that any writer can stream.

The data are a pure function of (profiles, seed): block b always holds profiles
b·BLOCK_SIZE+1 … (b+1)·BLOCK_SIZE, drawn from random streams seeded with (seed, b, stream),
so blocks can be generated in any order or in parallel, and a smaller data set is a prefix
of a larger one with the same seed (the last block is generated whole, then cut). Changing
BLOCK_SIZE changes the data; it is part of the data's definition, not a tuning knob.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from switchyard.sampledata.consent import consents, suppressions
from switchyard.sampledata.profiles import Stream, build_profiles, rng_for

BLOCK_SIZE = 50_000
MIN_ID_WIDTH = 7


@dataclass(frozen=True, slots=True)
class SampleBlock:
    index: int
    profiles: pa.RecordBatch
    consents: pa.RecordBatch
    suppressions: pa.RecordBatch

    def batches(self) -> Iterator[tuple[str, pa.RecordBatch]]:
        yield "profiles", self.profiles
        yield "consents", self.consents
        yield "suppressions", self.suppressions


def id_width(profiles: int) -> int:
    return max(MIN_ID_WIDTH, len(str(profiles)))


def block_count(profiles: int) -> int:
    return -(-profiles // BLOCK_SIZE)


def build_block(profiles: int, seed: int, index: int) -> SampleBlock:
    """Block `index` of the data set (profiles, seed), independent of every other block."""
    check_args(profiles, seed)
    if not 0 <= index < block_count(profiles):
        raise ValueError(f"block {index} is outside 0..{block_count(profiles) - 1}")
    start = index * BLOCK_SIZE
    keep = min(BLOCK_SIZE, profiles - start)
    people = build_profiles(seed, index, start, BLOCK_SIZE, id_width(profiles))
    consent_batch, consent_rows = consents(rng_for(seed, index, Stream.CONSENT), people)
    suppression_batch, suppression_rows = suppressions(
        rng_for(seed, index, Stream.SUPPRESSION), people
    )
    # Rows are ordered by profile, so cutting the block short is cutting each batch short.
    return SampleBlock(
        index=index,
        profiles=people.batch.slice(0, keep),
        consents=consent_batch.slice(0, int(np.searchsorted(consent_rows, keep))),
        suppressions=suppression_batch.slice(0, int(np.searchsorted(suppression_rows, keep))),
    )


def iter_blocks(
    profiles: int, seed: int = 42, *, ahead: int = 0
) -> Generator[SampleBlock, None, None]:
    """Blocks in order; with ahead > 0, that many are built on a thread while the caller works.

    Building is mostly numpy / Arrow kernels that release the GIL, so a writer that spends
    its time in the database overlaps with generation instead of waiting for it.
    """
    check_args(profiles, seed)
    count = block_count(profiles)
    if ahead <= 0:
        for index in range(count):
            yield build_block(profiles, seed, index)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sampledata") as pool:
        pending: deque[Future[SampleBlock]] = deque()
        try:
            for index in range(count):
                pending.append(pool.submit(build_block, profiles, seed, index))
                if len(pending) > ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            # Closed early (the writer failed): don't build blocks nobody will read.
            for future in pending:
                future.cancel()


def generate(profiles: int, seed: int = 42) -> Iterator[tuple[str, pa.RecordBatch]]:
    """(table name, batch) pairs, ≤ BLOCK_SIZE profiles at a time, profiles first per block."""
    for block in iter_blocks(profiles, seed):
        yield from block.batches()


def check_args(profiles: int, seed: int) -> None:
    """ValueError unless (profiles, seed) describe a data set."""
    if profiles < 1:
        raise ValueError(f"profiles must be at least 1, got {profiles}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
