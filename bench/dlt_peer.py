"""The peer: dlt with a custom destination posting the same signed batches to the simulator.

Configured the fastest way dlt offers for this job rather than its defaults: the resource
yields Arrow record batches straight from DuckDB (no per-row Python in extract/normalize),
files are rotated so each of the parallel load workers gets its own file, and the
destination receives 1,000-row Arrow batches read back from parquet. Timed end to end:
extract + normalize + load.

python -m bench.dlt_peer --warehouse W --url URL --work-dir DIR
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import peer

NAME = "dlt"
# One file per load worker: dlt parallelises loading across files, never within one, so
# this is what puts IN_FLIGHT requests in flight.
LOAD_WORKERS = peer.IN_FLIGHT
# Divides every file's share evenly, so files rotate on 1,000-row boundaries.
ARROW_BATCH_ROWS = 25_000


def configure(work_dir: Path, rows: int) -> None:
    """dlt reads its configuration from the environment; set it before dlt is imported."""
    # Whole Arrow batches per file: files then hold whole 1,000-row requests, and a file
    # rotates exactly at its share rather than one Arrow batch later.
    per_file = max(ARROW_BATCH_ROWS, -(-rows // LOAD_WORKERS))
    per_file = -(-per_file // ARROW_BATCH_ROWS) * ARROW_BATCH_ROWS
    os.environ.update(
        {
            # Local runs only: no anonymous usage reports leaving the machine.
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "RUNTIME__LOG_LEVEL": "WARNING",
            "DLT_DATA_DIR": str(work_dir / "data"),
            "DATA_WRITER__FILE_MAX_ITEMS": str(per_file),
            "DATA_WRITER__BUFFER_MAX_ITEMS": str(ARROW_BATCH_ROWS),
            "LOAD__WORKERS": str(LOAD_WORKERS),
            "NORMALIZE__WORKERS": "1",
            "LOAD__DELETE_COMPLETED_JOBS": "true",
        }
    )


def run(warehouse: Path, url: str, work_dir: Path) -> peer.PeerResult:
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        row = con.execute("SELECT count(*) FROM profiles").fetchone()
    rows = int(row[0]) if row else 0
    configure(work_dir, rows)
    import dlt
    import httpx
    import orjson

    key = peer.secret()
    local = threading.local()
    lock = threading.Lock()
    totals = {"records": 0, "accepted": 0, "requests": 0, "body_bytes": 0}

    def http() -> httpx.Client:
        # One client per load worker thread: each worker posts its file's batches in turn.
        client: httpx.Client | None = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=60)
        return client

    @dlt.destination(
        name="bench_webhook",
        batch_size=peer.BATCH_SIZE,
        loader_file_format="parquet",
        skip_dlt_columns_and_tables=True,
    )
    def webhook(items: Any, table: Any) -> None:
        rows = items.to_pylist()
        operations = [{"op": "upsert", "key": r.pop(peer.KEY), "fields": r} for r in rows]
        with lock:
            number = totals["requests"]
            totals["requests"] += 1
        idempotency_key = peer.batch_key(NAME, number)
        body = orjson.dumps(
            {
                "batch_id": idempotency_key,
                "sync": "bench_dlt",
                "contract_version": peer.CONTRACT_VERSION,
                "operations": operations,
            }
        )
        response = http().post(url, content=body, headers=peer.headers(key, body, idempotency_key))
        accepted = peer.accepted_count(response.status_code, response.content)
        with lock:
            totals["records"] += len(rows)
            totals["accepted"] += accepted
            totals["body_bytes"] += len(body)

    @dlt.resource(name="profiles", write_disposition="append")
    def profiles() -> Iterator[Any]:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            yield from con.sql(peer.QUERY).to_arrow_reader(ARROW_BATCH_ROWS)

    started = time.perf_counter()
    pipeline = dlt.pipeline(
        pipeline_name="bench_dlt",
        pipelines_dir=str(work_dir / "pipelines"),
        destination=webhook,
        dataset_name="bench",
    )
    info = pipeline.run(profiles())
    seconds = time.perf_counter() - started
    info.raise_on_failed_jobs()
    return peer.PeerResult(
        NAME,
        totals["records"],
        totals["accepted"],
        totals["requests"],
        totals["body_bytes"],
        seconds,
    )


def main() -> None:
    args = peer.cli(__doc__ or NAME)
    work_dir = Path(args.work_dir or ".state/bench/dlt")
    work_dir.mkdir(parents=True, exist_ok=True)
    peer.emit(run(Path(args.warehouse), args.url, work_dir))


if __name__ == "__main__":
    main()
