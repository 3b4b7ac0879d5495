"""Where a run's files go, relative to the export's root (a directory or an object store).

    <sync>/<run_id>/part-<chunk:05d>-<batch:05d>.<ext>   one per batch: the rows
    <sync>/<run_id>/_parts/<part file>.json              one per part: its counts and checksum
    <sync>/<run_id>/manifest.json                        written once the run is committed
    <sync>/<run_id>/_SUCCESS                             written last: the run is complete

Names starting with `_` or `.` (the per-part records, the marker, temporary files) are the
ones Spark, Hive and pyarrow datasets skip by default.
"""

from __future__ import annotations

import re

from switchyard.errors import FatalError

STATS_DIR = "_parts"
MANIFEST = "manifest.json"
SUCCESS = "_SUCCESS"
PART = re.compile(r"^part-(?P<chunk>\d{5,})-(?P<batch>\d{5,})\.(?P<ext>csv|csv\.gz|parquet)$")

# Sync names are catalog names; run ids are Temporal run ids (UUIDs). Anything else could
# climb out of the export's root.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def run_prefix(sync: str, run_id: str) -> str:
    """`<sync>/<run_id>/`, refusing values that are not a single safe path segment."""
    for label, value in (("sync", sync), ("run id", run_id)):
        if not _SEGMENT.match(value) or ".." in value:
            raise FatalError(f"file export: {label} {value!r} cannot name a directory")
    return f"{sync}/{run_id}/"


def extension(format: str, codec: str) -> str:
    if format == "csv":
        return "csv.gz" if codec == "gzip" else "csv"
    # Parquet compresses inside the file, page by page.
    return "parquet"


def part_name(chunk: int, batch: int, ext: str) -> str:
    return f"part-{chunk:05d}-{batch:05d}.{ext}"


def stats_name(part: str) -> str:
    return f"{STATS_DIR}/{part}.json"
