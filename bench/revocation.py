"""Consent revocation latency: from the moment consents are revoked in the warehouse to the
moment the destination removes each of those profiles.

The consent sync first delivers its audience; then REVOKED profiles it holds lose their
consent in one transaction, and a run starts at once, as a scheduled run would at its next
tick (so in production add up to one schedule interval). That run must send exactly those
removals and nothing else; the simulator's log then times each batch's arrival, and every
profile in a batch was removed when the batch arrived, so the latency of each revocation
is known exactly.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

from switchyard.warehouse.duckdb_lock import connect_with_retry

SYNC, HOOK = "bench_consent", "bench_consent"
PURPOSE = "email_marketing"
REVOKED = 1_000


def revoke(warehouse: Path, count: int, say: Callable[[str], None]) -> float:
    """Revoke the consent of `count` profiles the destination holds (the sync is keyed by
    profile_id); the wall time of the commit."""
    con = connect_with_retry(warehouse, 60, on_wait=say)
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute(
            """UPDATE consents SET granted = FALSE, updated_at = current_timestamp
            WHERE purpose = ? AND profile_id IN (
                SELECT key FROM switchyard.delivered WHERE sync_id = ?
                ORDER BY hash(key) LIMIT ?)""",
            [PURPOSE, SYNC, count],
        )
        con.execute("COMMIT")
        return time.time()
    finally:
        con.close()


def latencies(log: list[dict[str, object]], revoked_at: float) -> list[float]:
    """One latency per removed profile: its batch's arrival after the revocation. Replayed
    batches (a retry the simulator recognised) removed nothing new and are skipped."""
    seconds: list[float] = []
    seen: set[object] = set()
    for entry in sorted(log, key=lambda e: float(str(e["received_at"]))):
        arrived = float(str(entry["received_at"]))
        key = entry["idempotency_key"]
        if entry["status"] != 200 or arrived < revoked_at or key in seen:
            continue
        seen.add(key)
        seconds += [arrived - revoked_at] * int(str(entry["operations"]))
    return seconds


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))]


def summary(seconds: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(seconds, 0.50), 3),
        "p99": round(percentile(seconds, 0.99), 3),
        "max": round(max(seconds), 3),
        "mean": round(statistics.fmean(seconds), 3),
    }
