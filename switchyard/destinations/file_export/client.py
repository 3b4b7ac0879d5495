"""File export: each batch becomes one CSV or Parquet file; a manifest closes the run.

Where: `directory` (a local or mounted directory) or `base_url` (an HTTP object store:
`PUT`/`GET <base_url>/objects/<path>`, `GET <base_url>/objects?prefix=`, bearer token from
the env var named by `token_env`; see `stores.py`). Both take the same paths:

    <sync>/<run_id>/part-<chunk:05d>-<batch:05d>.<csv|csv.gz|parquet>
    <sync>/<run_id>/_parts/<part file>.json     the part's counts and sha256, written after it
    <sync>/<run_id>/manifest.json               after the run's commit (`complete_run`)
    <sync>/<run_id>/_SUCCESS                    empty; written last

Columns and types: see `formats.py` (`op`, the identifier, each sent field in contract
order). Every file is written atomically, and a part's bytes depend only on its batch, so
a batch re-sent after a crash rewrites its part with identical content: re-sending is
idempotent. A file has no per-row verdict: a written part accepts every row, and nothing
is ever rejected row by row.

manifest.json:

    {"manifest_version": 1, "run_id", "sync", "destination", "contract_version",
     "format": "csv" | "parquet", "compression", "created_at": "<ISO 8601 UTC>",
     "identifier": "<column>", "columns": [{"name", "type"}],
     "parts": [{"file", "rows", "upserts", "removes", "bytes", "sha256"}],
     "totals": {"parts", "rows", "upserts", "removes", "bytes"}}

For readers: a run is complete once `_SUCCESS` exists; read the files the manifest lists
(and check their sha256). Parts without a manifest belong to a run still being delivered,
or one that failed or was cancelled: do not read them. A run's files hold that run's
changes only: apply the runs of a sync in the order their `created_at` says, an upsert
replacing the key's row and a remove deleting it. After a full resync the run holds
the whole audience.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime

import httpx
import orjson

from switchyard.catalog.models import Destination
from switchyard.delivery.ratelimit import RateLimiter
from switchyard.destinations.base import BatchOutcome
from switchyard.destinations.credentials import resolve_credential
from switchyard.destinations.file_export.formats import (
    OP_COLUMN,
    PartStats,
    columns_for,
    describe,
    encode_part,
)
from switchyard.destinations.file_export.layout import (
    MANIFEST,
    PART,
    STATS_DIR,
    SUCCESS,
    extension,
    part_name,
    run_prefix,
    stats_name,
)
from switchyard.destinations.file_export.spec import FileExportConfig
from switchyard.destinations.file_export.stores import (
    HttpObjectStore,
    LocalDirectory,
    ObjectStore,
)
from switchyard.errors import DestinationConfigError, DestinationUnavailableError, FatalError
from switchyard.pipeline.checkpoints import Batch

MANIFEST_VERSION = 1
DEV_OBJECT_STORE_TOKEN = "dev-only-object-store-token"


def resolve_token(config: FileExportConfig, environment: str, env: Mapping[str, str]) -> str:
    return resolve_credential(
        config.token_env, DEV_OBJECT_STORE_TOKEN, "the object store's token", environment, env
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


class FileExportClient:
    def __init__(
        self,
        destination: Destination,
        sync: str,
        limiter: RateLimiter,
        environment: str = "development",
        env: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        config = destination.config
        if not isinstance(config, FileExportConfig):
            raise DestinationConfigError(f"{destination.name} is not a file_export destination")
        self._config = config
        self._name = destination.name
        self._sync = sync
        self._contract = destination.contract
        self._columns = columns_for(destination.contract)
        if OP_COLUMN in (c.name for c in self._columns[1:]):
            raise DestinationConfigError(
                f"{destination.name}: a field named {OP_COLUMN!r} would collide with the "
                "export's operation column; rename it in the contract"
            )
        self._ext = extension(config.format, config.codec)
        self._now = now
        self._store = self._open_store(
            environment, os.environ if env is None else env, limiter, transport
        )

    def _open_store(
        self,
        environment: str,
        env: Mapping[str, str],
        limiter: RateLimiter,
        transport: httpx.AsyncBaseTransport | None,
    ) -> ObjectStore:
        config = self._config
        if config.directory is not None:
            return LocalDirectory(config.directory, self._name)
        assert config.base_url is not None  # the config allows exactly one of the two
        return HttpObjectStore(
            config.base_url,
            resolve_token(config, environment, env),
            name=self._name,
            token_env=config.token_env,
            timeout=config.timeout_seconds,
            limiter=limiter,
            transport=transport,
        )

    async def preflight(self) -> None:
        await self._store.check()

    async def send(self, batch: Batch, idempotency_key: str) -> BatchOutcome:
        """Write the batch's part, then its record; the key is implied by the part's name."""
        if not batch.run_id:
            raise FatalError(f"{self._name}: a file export batch needs its run id")
        prefix = run_prefix(self._sync, batch.run_id)
        name = part_name(batch.chunk, batch.number, self._ext)
        config = self._config
        # Off the event loop: a large batch takes a while to encode.
        body, stats = await asyncio.to_thread(
            encode_part, batch, self._columns, name, config.format, config.codec
        )
        await self._store.put(prefix + name, body)
        # Written second, so a record vouches for a complete part.
        await self._store.put(prefix + stats_name(name), stats.to_json())
        return BatchOutcome(accepted=len(batch.operations))

    async def complete_run(self, run_id: str) -> None:
        """Write the manifest, then `_SUCCESS`; a run already marked complete is left alone."""
        prefix = run_prefix(self._sync, run_id)
        if await self._store.get(prefix + SUCCESS) is not None:
            return
        stats = await self._part_stats(prefix)
        manifest = self._manifest(run_id, stats)
        await self._store.put(prefix + MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        await self._store.put(prefix + SUCCESS, b"")

    async def _part_stats(self, prefix: str) -> list[PartStats]:
        listing = {
            path[len(prefix) :]: size for path, size in (await self._store.list(prefix)).items()
        }
        parts = sorted(name for name in listing if PART.match(name))
        records = {name for name in listing if name.startswith(STATS_DIR + "/")}
        stats: list[PartStats] = []
        for part in parts:
            record = stats_name(part)
            records.discard(record)
            if record not in listing:
                # Its writer is still running (a stale attempt) or died before the record;
                # the record follows the part, so asking again shortly settles it.
                raise DestinationUnavailableError(
                    f"{self._name}: {prefix}{part} has no record in {STATS_DIR}/ yet"
                )
            data = await self._store.get(prefix + record)
            if data is None:
                raise DestinationUnavailableError(f"{self._name}: {prefix}{record} vanished")
            try:
                part_stats = PartStats.from_json(data)
            except (orjson.JSONDecodeError, TypeError) as error:
                raise FatalError(f"{self._name}: {prefix}{record} is unreadable") from error
            if part_stats.file != part or part_stats.bytes != listing[part]:
                raise FatalError(
                    f"{self._name}: {prefix}{part} is {listing[part]} bytes but its record "
                    f"says {part_stats.bytes}: the run's directory was changed by hand"
                )
            stats.append(part_stats)
        if records:
            raise FatalError(
                f"{self._name}: records without their parts in {prefix}: {sorted(records)}"
            )
        return stats

    def _manifest(self, run_id: str, stats: list[PartStats]) -> dict[str, object]:
        return {
            "manifest_version": MANIFEST_VERSION,
            "run_id": run_id,
            "sync": self._sync,
            "destination": self._name,
            "contract_version": self._contract.version,
            "format": self._config.format,
            "compression": self._config.codec,
            "created_at": self._now().isoformat().replace("+00:00", "Z"),
            "identifier": self._contract.identifier.name,
            "columns": describe(self._columns),
            "parts": [asdict(s) for s in stats],
            "totals": {
                "parts": len(stats),
                "rows": sum(s.rows for s in stats),
                "upserts": sum(s.upserts for s in stats),
                "removes": sum(s.removes for s in stats),
                "bytes": sum(s.bytes for s in stats),
            },
        }

    async def aclose(self) -> None:
        await self._store.aclose()
