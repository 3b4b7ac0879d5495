"""Bulk API 2.0 ingest jobs: a big batch of upserts as one CSV, in a handful of requests.

    POST  /services/data/vXX.X/jobs/ingest
          {"object", "externalIdFieldName", "contentType": "CSV", "operation": "upsert",
           "lineEnding": "LF"}                                  200 {"id", "state": "Open"}
    PUT   /jobs/ingest/{id}/batches   text/csv (100 MB at most)  201
    PATCH /jobs/ingest/{id}   {"state": "UploadComplete"}         200
    GET   /jobs/ingest/{id}   until "state" is JobComplete, Failed or Aborted
          {"state", "numberRecordsProcessed", "numberRecordsFailed", "errorMessage"}
    GET   /jobs/ingest/{id}/failedResults        "sf__Id","sf__Error",<uploaded columns>
    GET   /jobs/ingest/{id}/unprocessedRecords   <uploaded columns>

Results are read only when the job's counts say there are some. The CSV has the
external-id column and every field any row sends: an empty cell leaves a field as it is
(what leaving it out of JSON does) and `#N/A` clears it (what JSON null does).

Creating a job is not idempotent: a batch re-sent after a crash, or after a job that did
not finish in time, becomes a second job. Upserting by external id makes the effect the same.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from switchyard.destinations.salesforce.api import SalesforceApi
from switchyard.errors import DestinationRefusedError, DestinationUnavailableError
from switchyard.pipeline.checkpoints import Operation

NULL = "#N/A"
CSV = "text/csv"
TERMINAL = frozenset({"JobComplete", "Failed", "Aborted"})
# A failed job's message starting so means the upload itself was wrong: resending won't help.
_REQUEST_FAULTS = ("InvalidBatch", "InvalidJob", "ClientInputError")

Rejection = tuple[str, str]


def cell(value: Any) -> str:
    if value is None or value == "":
        return NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def render_rows(
    external_id_field: str, operations: Sequence[Operation]
) -> tuple[bytes, list[bytes]]:
    """The CSV header and one encoded line per operation (LF line endings)."""
    parsed = [(op.key, orjson.loads(op.fields or "{}")) for op in operations]
    columns = [external_id_field]
    seen = {external_id_field}
    for _, fields in parsed:
        for name in fields:
            if name not in seen:
                seen.add(name)
                columns.append(name)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def line(values: list[str]) -> bytes:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue().encode()

    missing = object()
    rows = []
    for key, fields in parsed:
        values = [key]
        for name in columns[1:]:
            value = fields.get(name, missing)
            values.append("" if value is missing else cell(value))
        rows.append(line(values))
    return line(columns), rows


def uploads(header: bytes, rows: Sequence[bytes], max_bytes: int) -> Iterator[tuple[int, int]]:
    """(start, end) row ranges whose CSV, header included, stays within `max_bytes`."""
    start, size = 0, len(header)
    for index, row in enumerate(rows):
        if index > start and size + len(row) > max_bytes:
            yield start, index
            start, size = index, len(header)
        size += len(row)
    if start < len(rows):
        yield start, len(rows)


async def upsert(api: SalesforceApi, operations: Sequence[Operation]) -> list[Rejection]:
    header, rows = render_rows(api.config.external_id_field, operations)
    rejections: list[Rejection] = []
    for start, end in uploads(header, rows, api.config.max_upload_bytes):
        data = header + b"".join(rows[start:end])
        keys = {op.key for op in operations[start:end]}
        rejections += await run_job(api, data, end - start, keys)
    return rejections


async def run_job(api: SalesforceApi, data: bytes, count: int, keys: set[str]) -> list[Rejection]:
    config = api.config
    spec = {
        "object": config.sobject,
        "externalIdFieldName": config.external_id_field,
        "contentType": "CSV",
        "operation": "upsert",
        "lineEnding": "LF",
    }
    job = api.json(await api.request("POST", "/jobs/ingest", content=orjson.dumps(spec)))
    job_id = job.get("id") if isinstance(job, dict) else None
    if not isinstance(job_id, str) or not job_id:
        raise DestinationUnavailableError(f"{api.name}: job creation answered without an id")
    await api.request("PUT", f"/jobs/ingest/{job_id}/batches", content=data, content_type=CSV)
    close = orjson.dumps({"state": "UploadComplete"})
    await api.request("PATCH", f"/jobs/ingest/{job_id}", content=close)
    info = await wait_for(api, job_id)
    check_finished(api.name, job_id, info)
    rejections: list[Rejection] = []
    if _count(info, "numberRecordsFailed") > 0:
        for row in await results(api, job_id, "failedResults"):
            key = row.get(config.external_id_field)
            if key in keys:
                rejections.append((key, row.get("sf__Error") or "failed in Bulk API job"))
    if _count(info, "numberRecordsProcessed") < count:
        for row in await results(api, job_id, "unprocessedRecords"):
            key = row.get(config.external_id_field)
            if key in keys:
                rejections.append((key, f"UNPROCESSED: Bulk API job {job_id} did not get to it"))
    return rejections


def _count(info: dict[str, Any], name: str) -> int:
    value = info.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else 0


async def wait_for(api: SalesforceApi, job_id: str) -> dict[str, Any]:
    """Poll the job (each poll a counted request) until it ends or time is up."""
    config = api.config
    deadline = time.monotonic() + config.job_timeout_seconds
    delay = config.poll_interval_seconds
    while True:
        info = api.json(await api.request("GET", f"/jobs/ingest/{job_id}"))
        state = info.get("state") if isinstance(info, dict) else None
        if state in TERMINAL:
            return dict(info)
        if time.monotonic() + delay > deadline:
            raise DestinationUnavailableError(
                f"{api.name}: Bulk API job {job_id} still {state} after "
                f"{config.job_timeout_seconds:g}s; the batch will be sent again as a new job"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, config.poll_max_interval_seconds)


def check_finished(name: str, job_id: str, info: dict[str, Any]) -> None:
    state = info.get("state")
    if state == "JobComplete":
        return
    message = str(info.get("errorMessage") or "no errorMessage")
    if state == "Failed" and message.startswith(_REQUEST_FAULTS):
        raise DestinationRefusedError(f"{name}: Bulk API job {job_id} failed: {message}")
    # Aborted (by someone else) or failed for the org's own reasons: send the batch again.
    raise DestinationUnavailableError(f"{name}: Bulk API job {job_id} {state}: {message}")


async def results(api: SalesforceApi, job_id: str, kind: str) -> list[dict[str, str]]:
    response = await api.request("GET", f"/jobs/ingest/{job_id}/{kind}", accept=CSV)
    return list(csv.DictReader(io.StringIO(response.text)))
