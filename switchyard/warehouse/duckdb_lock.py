"""Opening a DuckDB file that another process may hold.

DuckDB lets one process at a time open a file for writing; a second one fails at once with an
IOException about a "Conflicting lock". A worker holds the warehouse while it runs, so
operator commands wait a little for it instead of failing on the first try.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)

WAIT_MESSAGE = "waiting for the warehouse lock (held by a running worker)"


class WarehouseLockedError(RuntimeError):
    """The warehouse file stayed locked by another process for the whole timeout."""

    def __init__(self, path: Path, timeout_s: float, holder: str | None) -> None:
        held_by = f" (held by PID {holder})" if holder else ""
        super().__init__(
            f"the warehouse {path} is locked by another process{held_by} and stayed locked "
            f"for {timeout_s:g}s; stop the worker using it, or point --warehouse elsewhere"
        )
        self.path = path
        self.holder = holder


def is_lock_conflict(error: duckdb.Error) -> bool:
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


def connect_with_retry(
    path: Path,
    timeout_s: float = 30,
    *,
    read_only: bool = False,
    on_wait: Callable[[str], None] | None = None,
    poll_s: float = 0.25,
) -> duckdb.DuckDBPyConnection:
    """duckdb.connect(path), retrying while another process holds the file's lock.

    on_wait is told WAIT_MESSAGE once, when the first attempt finds the lock taken (default:
    a log warning). Raises WarehouseLockedError after timeout_s; other errors at once.
    """
    deadline = time.monotonic() + timeout_s
    announced = False
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as error:
            if not is_lock_conflict(error):
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WarehouseLockedError(path, timeout_s, _holder(error)) from error
            if not announced:
                (on_wait or log.warning)(WAIT_MESSAGE)
                announced = True
            time.sleep(min(poll_s, remaining))


def _holder(error: duckdb.Error) -> str | None:
    found = re.search(r"PID (\d+)", str(error))
    return found.group(1) if found else None
