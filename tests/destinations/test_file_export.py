"""The file export: parts read back with csv and pyarrow, atomic and idempotent writes, the
manifest checked against the files, and the HTTP object-store backend against its simulator.
"""

from __future__ import annotations

import csv
import errno
import gzip
import hashlib
import io
import os
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.routing import Mount

from switchyard.catalog.models import (
    Contract,
    Destination,
    FieldMapping,
    FieldOwner,
    Identifier,
    TraitType,
)
from switchyard.delivery.ratelimit import RateLimiter
from switchyard.destinations import registry
from switchyard.destinations.base import CompletesRuns
from switchyard.destinations.file_export import stores
from switchyard.destinations.file_export.client import DEV_OBJECT_STORE_TOKEN, FileExportClient
from switchyard.destinations.file_export.simulator import create_app
from switchyard.destinations.file_export.spec import SPEC, FileExportConfig
from switchyard.errors import (
    ContractMismatchError,
    DestinationConfigError,
    DestinationRefusedError,
    DestinationUnavailableError,
    FatalError,
    RateLimitedError,
    RetryableError,
)
from switchyard.pipeline.checkpoints import Batch, Operation
from tests.destinations.support import Opened, SimControl, remove, upsert

SYNC = "vip_export"
RUN = "0b5e7c1a-8d1e-4f7e-9a51-3c2f6a1d9e40"
SIM_URL = "http://store"

FIELDS = [
    FieldMapping(name="first_name", source="first_name"),
    FieldMapping(name="plan", source="plan", send_nulls=False),
    FieldMapping(name="orders", source="orders", type=TraitType.INTEGER),
    FieldMapping(name="lifetime_value", source="lifetime_value", type=TraitType.NUMBER),
    FieldMapping(name="vip", source="vip", type=TraitType.BOOLEAN),
    FieldMapping(name="last_order_at", source="last_order_at", type=TraitType.TIMESTAMP),
    # Owned by the destination: never written.
    FieldMapping(name="notes", source="notes", owner=FieldOwner.DESTINATION),
    FieldMapping(name="birthday", source="birthday", type=TraitType.DATE),
]
SENT = ["first_name", "plan", "orders", "lifetime_value", "vip", "last_order_at", "birthday"]


def destination(fields: list[FieldMapping] | None = None, **config: Any) -> Destination:
    return Destination(
        name="vip_files",
        owner="data",
        config=FileExportConfig(**config),
        contract=Contract(
            version=3,
            identifier=Identifier(name="email", source="email", type=TraitType.EMAIL),
            fields=FIELDS if fields is None else fields,
        ),
    )


def batch(*operations: Operation, chunk: int = 0, number: int = 0, run_id: str = RUN) -> Batch:
    return Batch(chunk=chunk, number=number, operations=list(operations), run_id=run_id)


ADA = upsert(
    "ada@example.com",
    first_name="Ada",
    plan="pro",
    orders=12,
    lifetime_value=1250.5,
    vip=True,
    last_order_at="2024-05-01T12:30:00Z",
    birthday="1990-12-10",
)
# Awkward text for CSV (a comma, quotes, a newline, non-ASCII), nulls, and `plan` left out
# (send_nulls: false) rather than null.
GRACE = upsert(
    "grace@example.com",
    first_name='Grace, "Amazing"\nHopper — ü',
    orders=0,
    lifetime_value=0,
    vip=False,
    last_order_at=None,
    birthday=None,
)
GONE = remove("gone@example.com")
SAMPLE = batch(ADA, GRACE, GONE)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


Connect = Callable[..., FileExportClient]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    opened: Opened[FileExportClient] = Opened()

    def make(
        dest: Destination,
        limiter: RateLimiter | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        environment: str = "development",
        env: dict[str, str] | None = None,
    ) -> FileExportClient:
        client = FileExportClient(
            dest,
            SYNC,
            limiter or RateLimiter(None),
            environment,
            {} if env is None else env,
            transport=transport,
            now=Clock(),
        )
        return opened.keep(client)

    yield make
    await opened.aclose()


def run_dir(root: Path) -> Path:
    return root / SYNC / RUN


def visible_files(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())


# -- configuration --------------------------------------------------------------------------


def test_config_takes_exactly_one_target_and_a_compression_that_fits_the_format() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        FileExportConfig()
    with pytest.raises(ValidationError, match="exactly one"):
        FileExportConfig(directory="/exports", base_url="http://store")
    with pytest.raises(ValidationError, match="does not apply to csv"):
        FileExportConfig(directory="/exports", format="csv", compression="zstd")
    assert FileExportConfig(directory="/exports").codec == "zstd"
    assert FileExportConfig(directory="/exports", format="csv").codec == "none"


def test_the_spec_is_registered_with_what_files_can_do() -> None:
    assert registry.spec_for("file_export") is SPEC
    assert SPEC.rate_limit is None
    assert SPEC.set_if_empty is False
    assert {op.value for op in SPEC.operations} == {"upsert", "remove"}


def test_a_field_named_op_is_refused(connect: Connect, tmp_path: Path) -> None:
    fields = [FieldMapping(name="op", source="plan")]
    with pytest.raises(DestinationConfigError, match="collide"):
        connect(destination(fields, directory=str(tmp_path)))


# -- CSV and Parquet round trips ------------------------------------------------------------


async def test_a_csv_part_reads_back_as_the_batch(connect: Connect, tmp_path: Path) -> None:
    client = connect(destination(directory=str(tmp_path), format="csv"))

    outcome = await client.send(SAMPLE, "k")

    assert outcome.accepted == 3 and not outcome.rejections
    data = (run_dir(tmp_path) / "part-00000-00000.csv").read_bytes()
    assert b"\r\n" in data and not data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert rows == [
        ["op", "email", *SENT],
        [
            "upsert",
            "ada@example.com",
            "Ada",
            "pro",
            "12",
            "1250.5",
            "true",
            "2024-05-01T12:30:00Z",
            "1990-12-10",
        ],
        [
            "upsert",
            "grace@example.com",
            'Grace, "Amazing"\nHopper — ü',
            "",
            "0",
            "0.0",
            "false",
            "",
            "",
        ],
        ["remove", "gone@example.com", "", "", "", "", "", "", ""],
    ]


async def test_gzip_csv_decompresses_to_the_same_rows(connect: Connect, tmp_path: Path) -> None:
    plain, zipped = tmp_path / "plain", tmp_path / "zipped"
    plain.mkdir(), zipped.mkdir()
    await connect(destination(directory=str(plain), format="csv")).send(SAMPLE, "k")
    await connect(destination(directory=str(zipped), format="csv", compression="gzip")).send(
        SAMPLE, "k"
    )

    compressed = (run_dir(zipped) / "part-00000-00000.csv.gz").read_bytes()
    assert gzip.decompress(compressed) == (run_dir(plain) / "part-00000-00000.csv").read_bytes()


async def test_a_parquet_part_reads_back_typed(connect: Connect, tmp_path: Path) -> None:
    client = connect(destination(directory=str(tmp_path)))

    await client.send(SAMPLE, "k")

    path = run_dir(tmp_path) / "part-00000-00000.parquet"
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
    table = pq.read_table(path)
    assert table.schema == pa.schema(
        [
            pa.field("op", pa.string(), nullable=False),
            pa.field("email", pa.string(), nullable=False),
            pa.field("first_name", pa.string()),
            pa.field("plan", pa.string()),
            pa.field("orders", pa.int64()),
            pa.field("lifetime_value", pa.float64()),
            pa.field("vip", pa.bool_()),
            pa.field("last_order_at", pa.timestamp("us", tz="UTC")),
            pa.field("birthday", pa.date32()),
        ]
    )
    nulls = dict.fromkeys(SENT)
    assert table.to_pylist() == [
        {
            "op": "upsert",
            "email": "ada@example.com",
            "first_name": "Ada",
            "plan": "pro",
            "orders": 12,
            "lifetime_value": 1250.5,
            "vip": True,
            "last_order_at": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
            "birthday": date(1990, 12, 10),
        },
        {
            **nulls,
            "op": "upsert",
            "email": "grace@example.com",
            "first_name": 'Grace, "Amazing"\nHopper — ü',
            "orders": 0,
            "lifetime_value": 0.0,
            "vip": False,
        },
        {**nulls, "op": "remove", "email": "gone@example.com"},
    ]


async def test_a_value_that_does_not_fit_its_type_writes_nothing(
    connect: Connect, tmp_path: Path
) -> None:
    client = connect(destination(directory=str(tmp_path)))

    # Arrow alone would store 1.5 as 1.
    with pytest.raises(ContractMismatchError, match=r"'orders' of 'ada@example\.com' is 1\.5"):
        await client.send(batch(upsert("ada@example.com", orders=1.5)), "k")

    assert visible_files(tmp_path) == []


# -- atomic, idempotent writes --------------------------------------------------------------


async def test_resending_a_batch_rewrites_its_part_byte_for_byte(
    connect: Connect, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_time = time.time
    for config in ({"format": "parquet"}, {"format": "csv", "compression": "gzip"}):
        root = tmp_path / config["format"]
        root.mkdir()
        client = connect(destination(directory=str(root), **config))
        await client.send(SAMPLE, "k")
        first = {name: (run_dir(root) / name).read_bytes() for name in visible_files(run_dir(root))}
        # Another worker (a new client) an hour later, after a crash: the same files.
        monkeypatch.setattr(time, "time", lambda: real_time() + 3600)
        await connect(destination(directory=str(root), **config)).send(SAMPLE, "k")
        again = {name: (run_dir(root) / name).read_bytes() for name in visible_files(run_dir(root))}
        monkeypatch.setattr(time, "time", real_time)

        assert again == first
        assert len(first) == 2  # the part and its record


async def test_a_failed_write_leaves_no_part_and_no_temporary_file(
    connect: Connect, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = connect(destination(directory=str(tmp_path)))
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        if os.path.isfile(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(stores.os, "fsync", failing_fsync)
    with pytest.raises(DestinationUnavailableError, match="Input/output error") as caught:
        await client.send(SAMPLE, "k")
    assert isinstance(caught.value, RetryableError)
    assert list(run_dir(tmp_path).iterdir()) == []  # no part, no hidden temporary file

    monkeypatch.setattr(stores.os, "fsync", real_fsync)
    await client.send(SAMPLE, "k")
    assert visible_files(run_dir(tmp_path)) == [
        "_parts/part-00000-00000.parquet.json",
        "part-00000-00000.parquet",
    ]


async def test_a_part_shows_under_its_name_only_once_complete(
    connect: Connect, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = connect(destination(directory=str(tmp_path), format="csv"))
    part = run_dir(tmp_path) / "part-00000-00000.csv"
    real_fsync = os.fsync
    # What a reader finds under the part's name while each file's bytes are being synced.
    seen: list[bytes | None] = []

    def watching_fsync(fd: int) -> None:
        if os.path.isfile(f"/proc/self/fd/{fd}"):
            seen.append(part.read_bytes() if part.exists() else None)
        real_fsync(fd)

    monkeypatch.setattr(stores.os, "fsync", watching_fsync)
    await client.send(SAMPLE, "k")
    first = part.read_bytes()
    await client.send(batch(ADA), "k")  # a different batch under the same name

    # Writing the part, its record; rewriting the part, its record.
    assert seen == [None, first, first, part.read_bytes()]
    assert part.read_bytes() != first


async def test_a_failed_rewrite_keeps_the_previous_file_whole(
    connect: Connect, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = connect(destination(directory=str(tmp_path), format="csv"))
    await client.send(SAMPLE, "k")
    part = run_dir(tmp_path) / "part-00000-00000.csv"
    before = part.read_bytes()

    def crash(source: str, target: str) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(stores.os, "replace", crash)
    with pytest.raises(DestinationUnavailableError):
        await client.send(batch(ADA), "k")

    assert part.read_bytes() == before
    assert sorted(p.name for p in run_dir(tmp_path).iterdir()) == [
        "_parts",
        "part-00000-00000.csv",
    ]


# -- the manifest ---------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_the_manifest_describes_every_part_and_matches_the_files(
    connect: Connect, tmp_path: Path
) -> None:
    client = connect(destination(directory=str(tmp_path)))
    assert isinstance(client, CompletesRuns)
    await client.send(batch(ADA, GONE, chunk=1, number=0), "k")
    await client.send(batch(GRACE, chunk=0, number=1), "k")
    await client.send(batch(remove("x@example.com"), remove("y@example.com")), "k")
    assert not (run_dir(tmp_path) / "manifest.json").exists()

    await client.complete_run(RUN)

    manifest = orjson.loads((run_dir(tmp_path) / "manifest.json").read_bytes())
    assert (run_dir(tmp_path) / "_SUCCESS").read_bytes() == b""
    parts = manifest.pop("parts")
    assert manifest == {
        "manifest_version": 1,
        "run_id": RUN,
        "sync": SYNC,
        "destination": "vip_files",
        "contract_version": 3,
        "format": "parquet",
        "compression": "zstd",
        "created_at": "2024-06-01T08:01:00Z",
        "identifier": "email",
        "columns": [
            {"name": "op", "type": "string"},
            {"name": "email", "type": "string"},
            {"name": "first_name", "type": "string"},
            {"name": "plan", "type": "string"},
            {"name": "orders", "type": "integer"},
            {"name": "lifetime_value", "type": "number"},
            {"name": "vip", "type": "boolean"},
            {"name": "last_order_at", "type": "timestamp"},
            {"name": "birthday", "type": "date"},
        ],
        "totals": {
            "parts": 3,
            "rows": 5,
            "upserts": 2,
            "removes": 3,
            "bytes": sum(p["bytes"] for p in parts),
        },
    }
    assert [p["file"] for p in parts] == [
        "part-00000-00000.parquet",
        "part-00000-00001.parquet",
        "part-00001-00000.parquet",
    ]
    for part in parts:
        data = (run_dir(tmp_path) / part["file"]).read_bytes()
        ops = pq.read_table(io.BytesIO(data)).column("op").to_pylist()
        assert part["bytes"] == len(data)
        assert part["sha256"] == sha256(data)
        assert (part["rows"], part["upserts"], part["removes"]) == (
            len(ops),
            ops.count("upsert"),
            ops.count("remove"),
        )


async def test_completing_a_run_again_changes_nothing(connect: Connect, tmp_path: Path) -> None:
    client = connect(destination(directory=str(tmp_path)))
    await client.send(SAMPLE, "k")
    await client.complete_run(RUN)
    manifest = (run_dir(tmp_path) / "manifest.json").read_bytes()

    # A retried commit step, from another worker with its own clock.
    await connect(destination(directory=str(tmp_path))).complete_run(RUN)
    await client.complete_run(RUN)

    assert (run_dir(tmp_path) / "manifest.json").read_bytes() == manifest


async def test_a_run_that_sent_nothing_is_completed_with_no_parts(
    connect: Connect, tmp_path: Path
) -> None:
    await connect(destination(directory=str(tmp_path))).complete_run(RUN)

    manifest = orjson.loads((run_dir(tmp_path) / "manifest.json").read_bytes())
    assert manifest["parts"] == [] and manifest["totals"]["rows"] == 0
    assert (run_dir(tmp_path) / "_SUCCESS").exists()


async def test_a_part_without_its_record_is_not_completed_yet(
    connect: Connect, tmp_path: Path
) -> None:
    client = connect(destination(directory=str(tmp_path)))
    await client.send(SAMPLE, "k")
    # A writer that died (or is still running) between the part and its record.
    (run_dir(tmp_path) / "_parts" / "part-00000-00000.parquet.json").unlink()

    with pytest.raises(DestinationUnavailableError, match="no record"):
        await client.complete_run(RUN)
    assert not (run_dir(tmp_path) / "manifest.json").exists()

    await client.send(SAMPLE, "k")
    await client.complete_run(RUN)
    assert (run_dir(tmp_path) / "_SUCCESS").exists()


async def test_a_part_changed_by_hand_stops_the_manifest(connect: Connect, tmp_path: Path) -> None:
    client = connect(destination(directory=str(tmp_path), format="csv"))
    await client.send(SAMPLE, "k")
    with (run_dir(tmp_path) / "part-00000-00000.csv").open("ab") as part:
        part.write(b"upsert,eve@example.com,,,,,,,\r\n")

    with pytest.raises(FatalError, match="changed by hand"):
        await client.complete_run(RUN)
    assert not (run_dir(tmp_path) / "_SUCCESS").exists()


async def test_run_ids_cannot_climb_out_of_the_export(connect: Connect, tmp_path: Path) -> None:
    client = connect(destination(directory=str(tmp_path / "exports")))
    (tmp_path / "exports").mkdir()

    with pytest.raises(FatalError, match="cannot name a directory"):
        await client.send(batch(ADA, run_id="../../escape"), "k")
    with pytest.raises(FatalError, match="needs its run id"):
        await client.send(batch(ADA, run_id=""), "k")
    assert visible_files(tmp_path) == []


# -- disk errors ----------------------------------------------------------------------------


async def test_a_missing_directory_is_a_configuration_error(
    connect: Connect, tmp_path: Path
) -> None:
    client = connect(destination(directory=str(tmp_path / "typo")))

    with pytest.raises(DestinationConfigError, match="does not exist"):
        await client.preflight()
    with pytest.raises(DestinationConfigError, match="does not exist"):
        await client.send(SAMPLE, "k")
    assert not (tmp_path / "typo").exists()


async def test_a_file_in_the_way_is_a_configuration_error(connect: Connect, tmp_path: Path) -> None:
    (tmp_path / SYNC).write_text("not a directory")
    client = connect(destination(directory=str(tmp_path)))

    await client.preflight()
    with pytest.raises(DestinationConfigError, match="check the `directory`"):
        await client.send(SAMPLE, "k")


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (errno.EACCES, DestinationConfigError),
        (errno.EROFS, DestinationConfigError),
        (errno.ENOSPC, DestinationUnavailableError),
    ],
)
async def test_disk_errors_say_whether_retrying_can_help(
    connect: Connect,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    error: type[Exception],
) -> None:
    # Root ignores permission bits, so the refusal is staged at the write itself.
    def refuse(path: Any, flags: int, mode: int = 0o777) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(stores.os, "open", refuse)
    client = connect(destination(directory=str(tmp_path)))

    with pytest.raises(error, match=os.strerror(code)):
        await client.preflight()
    with pytest.raises(error, match=os.strerror(code)):
        await client.send(SAMPLE, "k")


# -- the HTTP object store, against the simulator -------------------------------------------


class Store(SimControl):
    """The simulator in-process, and its control API."""

    def __init__(self) -> None:
        super().__init__(create_app(), SIM_URL)

    def object(self, path: str) -> bytes:
        return bytes(self.app.state.store.objects[path].data)


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    simulator = Store()
    yield simulator
    await simulator.aclose()


class RecordingLimiter(RateLimiter):
    def __init__(self) -> None:
        super().__init__(None)
        self.acquired = 0
        self.observed: list[tuple[int | None, float | None]] = []
        self.held: list[float] = []

    async def acquire(self) -> None:
        self.acquired += 1
        await super().acquire()

    def observe(self, remaining: int | None, resets_in: float | None) -> None:
        self.observed.append((remaining, resets_in))
        super().observe(remaining, resets_in)

    def hold_for(self, seconds: float) -> None:
        self.held.append(seconds)
        super().hold_for(seconds)


async def test_the_object_store_holds_what_the_directory_would(
    connect: Connect, store: Store, tmp_path: Path
) -> None:
    remote = connect(destination(base_url=SIM_URL, format="csv"), transport=store.transport)
    local = connect(destination(directory=str(tmp_path), format="csv"))

    await remote.preflight()
    for client in (remote, local):
        await client.send(batch(ADA, GRACE, chunk=0, number=0), "k")
        await client.send(batch(GONE, chunk=0, number=1), "k")
        await client.complete_run(RUN)

    prefix = f"{SYNC}/{RUN}/"
    for name in ("part-00000-00000.csv", "part-00000-00001.csv"):
        assert store.object(prefix + name) == (run_dir(tmp_path) / name).read_bytes()
    manifest = orjson.loads(store.object(prefix + "manifest.json"))
    assert manifest == orjson.loads((run_dir(tmp_path) / "manifest.json").read_bytes())
    assert store.object(prefix + "_SUCCESS") == b""


async def test_sim_records_follow_upserts_and_removes_across_runs(
    connect: Connect, store: Store
) -> None:
    client = connect(destination(base_url=SIM_URL), transport=store.transport)

    await client.send(batch(ADA, GRACE, upsert("gone@example.com", first_name="Gone")), "k")
    first = await store.records()
    await client.send(batch(ADA, GRACE, upsert("gone@example.com", first_name="Gone")), "k")
    assert await store.records() == first  # the same part again changes nothing
    await client.send(batch(GONE, upsert("ada@example.com", plan="team"), run_id="run-2"), "k")

    records = await store.records()
    assert set(first) == {"ada@example.com", "grace@example.com", "gone@example.com"}
    assert first["ada@example.com"]["plan"] == "pro"
    assert set(records) == {"ada@example.com", "grace@example.com"}
    assert records["ada@example.com"] == {**dict.fromkeys(SENT), "email": "ada@example.com"} | {
        "plan": "team"
    }
    stats = await store.stats()
    assert stats["max_batch_records"] == 3
    assert stats["status_counts"] == {"200": 6}


async def test_the_store_wants_a_bearer_token(store: Store) -> None:
    response = await store.control.put(f"/objects/{SYNC}/x.txt", content=b"hello")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "Unauthorized"


async def test_the_store_checks_the_digest_and_the_parts(store: Store) -> None:
    auth = {"Authorization": "Bearer t"}
    digest = {**auth, "X-Content-SHA256": sha256(b"other")}
    bad_digest = await store.control.put("/objects/a/b.txt", content=b"hello", headers=digest)
    bad_part = await store.control.put(
        "/objects/a/part-00000-00000.parquet", content=b"x", headers=auth
    )
    climbing = await store.control.put("/objects/a//b.txt", content=b"x", headers=auth)

    assert bad_digest.status_code == 400 and bad_digest.json()["error"]["code"] == "BadDigest"
    assert bad_part.status_code == 400 and bad_part.json()["error"]["code"] == "InvalidPart"
    assert climbing.status_code == 400
    assert store.app.state.store.objects == {}


async def test_outside_development_the_token_must_be_set(connect: Connect) -> None:
    dest = destination(base_url=SIM_URL)

    with pytest.raises(DestinationConfigError, match="SWITCHYARD_OBJECT_STORE_TOKEN"):
        connect(dest, environment="production")
    with pytest.raises(DestinationConfigError, match="placeholder"):
        connect(
            dest,
            environment="production",
            env={"SWITCHYARD_OBJECT_STORE_TOKEN": DEV_OBJECT_STORE_TOKEN},
        )
    connect(dest, environment="production", env={"SWITCHYARD_OBJECT_STORE_TOKEN": "s3cr3t"})


async def test_a_429_is_rate_limited_with_its_retry_after_and_holds_the_limiter(
    connect: Connect, store: Store
) -> None:
    limiter = RecordingLimiter()
    client = connect(destination(base_url=SIM_URL), limiter, store.transport)
    await store.configure(force_status=[429], force_retry_after=1)

    with pytest.raises(RateLimitedError) as caught:
        await client.send(SAMPLE, "k")

    assert caught.value.retry_after == 1
    assert limiter.held == [1]
    assert await store.records() == {}


async def test_the_stores_rate_limit_headers_feed_the_limiter(
    connect: Connect, store: Store
) -> None:
    limiter = RecordingLimiter()
    client = connect(destination(base_url=SIM_URL), limiter, store.transport)
    await store.configure(rate_limit={"requests": 2, "per_seconds": 60})

    await client.send(SAMPLE, "k")

    # The part, then its record: one acquire each; the second spends the window.
    assert limiter.acquired == 2
    assert limiter.observed == [(1, 0), (0, 30)]
    assert limiter.held == [30]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, DestinationUnavailableError),
        (503, DestinationUnavailableError),
        (403, DestinationRefusedError),
        (401, DestinationRefusedError),
        (400, DestinationRefusedError),
    ],
)
async def test_http_errors_are_classified(
    connect: Connect, store: Store, status: int, error: type[Exception]
) -> None:
    client = connect(destination(base_url=SIM_URL), transport=store.transport)
    await store.configure(force_status=[status])

    with pytest.raises(error, match=f"HTTP {status}") as caught:
        await client.send(SAMPLE, "k")

    if status in (401, 403):
        assert "SWITCHYARD_OBJECT_STORE_TOKEN" in str(caught.value)
        assert isinstance(caught.value, FatalError)
    await client.send(SAMPLE, "k")  # the fault passed: the same batch now lands
    assert len(await store.records()) == 2


async def test_an_unreachable_store_is_retryable(connect: Connect) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = connect(destination(base_url=SIM_URL), transport=httpx.MockTransport(refuse))

    with pytest.raises(DestinationUnavailableError, match="ConnectError"):
        await client.preflight()
    with pytest.raises(DestinationUnavailableError, match="ConnectError"):
        await client.send(SAMPLE, "k")


async def test_the_store_works_mounted_under_a_prefix(connect: Connect) -> None:
    # As the simulator hub serves it: every destination's simulator under /<kind>.
    hub = Starlette(routes=[Mount("/file_export", app=create_app())])
    client = connect(
        destination(base_url=f"{SIM_URL}/file_export"), transport=httpx.ASGITransport(app=hub)
    )

    await client.preflight()
    await client.send(SAMPLE, "k")
    await client.complete_run(RUN)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hub)) as control:
        records = (await control.get(f"{SIM_URL}/file_export/_sim/records")).json()
    assert sorted(records["records"]) == ["ada@example.com", "grace@example.com"]
