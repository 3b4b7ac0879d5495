"""What the simulated Salesforce org holds: records, SOQL lookups and Bulk API 2.0 jobs.

Records live per (sObject, external-id field), keyed by the external-id value, each with a
generated 18-character Id. Every write path (collections, single-record upserts, bulk
jobs) goes through `check` and `apply`, so they agree on validation, on the records a test
rejects (`Gate.rejects`), and on idempotency: upserting what is already there changes
nothing. Matching is exact (Salesforce's own ignores case for most text fields).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from switchyard.simulators.control import Gate

MAX_FIELD_CHARS = 131_072  # a Long Text Area field
QUERY_PAGE = 2000  # rows per SOQL answer before nextRecordsUrl
_ID_PREFIXES = {"Account": "001", "Contact": "003", "Lead": "00Q", "Opportunity": "006"}
_ID_SHAPE = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
DELIMITERS = {
    "COMMA": ",",
    "TAB": "\t",
    "PIPE": "|",
    "SEMICOLON": ";",
    "CARET": "^",
    "BACKQUOTE": "`",
}

Record = dict[str, Any]
# (statusCode, message, fields) as Salesforce reports a record it did not save
Failure = tuple[str, str, list[str]]
_ROLLED_BACK: Failure = (
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using "
    "AllOrNone header",
    [],
)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def lookup(record: Record, name: str) -> Any:
    """A field by name, ignoring case as Salesforce's API names do."""
    if name in record:
        return record[name]
    folded = name.casefold()
    return next((v for k, v in record.items() if k.casefold() == folded), None)


@dataclass
class Job:
    id: str
    object: str
    external_id_field: str
    line_ending: str
    delimiter: str
    api_version: str
    created: str = field(default_factory=now_iso)
    state: str = "Open"
    polls_left: int = 0
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    successful: list[list[str]] = field(default_factory=list)
    failed: list[list[str]] = field(default_factory=list)
    processed: int = 0
    error_message: str | None = None

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "id": self.id,
            "operation": "upsert",
            "object": self.object,
            "createdById": "005000000000001AAA",
            "createdDate": self.created,
            "systemModstamp": now_iso(),
            "state": self.state,
            "externalIdFieldName": self.external_id_field,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version.lstrip("v")),
            "jobType": "V2Ingest",
            "lineEnding": self.line_ending,
            "columnDelimiter": next(k for k, v in DELIMITERS.items() if v == self.delimiter),
            "numberRecordsProcessed": self.processed,
            "numberRecordsFailed": len(self.failed),
            "retries": 0,
            "totalProcessingTime": 0,
            "apiActiveProcessingTime": 0,
            "apexProcessingTime": 0,
        }
        if self.state == "Open":
            info["contentUrl"] = f"services/data/{self.api_version}/jobs/ingest/{self.id}/batches"
        if self.error_message:
            info["errorMessage"] = self.error_message
        return info

    def results_csv(self, kind: str) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=self.delimiter, lineterminator="\n")
        if kind == "successfulResults":
            writer.writerow(["sf__Id", "sf__Created", *self.header])
            writer.writerows(self.successful)
        elif kind == "failedResults":
            writer.writerow(["sf__Id", "sf__Error", *self.header])
            writer.writerows(self.failed)
        else:  # unprocessedRecords
            writer.writerow(self.header)
            writer.writerows(self.rows[self.processed :])
        return buffer.getvalue()


class Org:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.reset()

    def reset(self) -> None:
        self.tables: dict[tuple[str, str], dict[str, Record]] = {}
        self.ids: dict[str, tuple[tuple[str, str], str]] = {}
        self.deleted: set[str] = set()
        self.jobs: dict[str, Job] = {}
        self.cursors: dict[str, list[Record]] = {}
        self._serial = 0

    def new_id(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}5g{self._serial:010d}AAE"

    # -- records ---------------------------------------------------------------------------

    def check(self, value: Any, fields: Record, id_field: str) -> Failure | None:
        """Why this record would not be saved, or None."""
        if not isinstance(value, str) or not value:
            return "MISSING_ARGUMENT", f"{id_field} not specified", [id_field]
        if any(name.casefold() == "id" for name in fields):
            return "INVALID_FIELD", "Id is not allowed in an upsert by external id", ["Id"]
        for name, item in fields.items():
            if isinstance(item, str) and len(item) > MAX_FIELD_CHARS:
                message = f"{name}: data value too large (max length={MAX_FIELD_CHARS})"
                return "STRING_TOO_LONG", message, [name]
        if self.gate.rejects(value):
            message = "Rejected by a validation rule (simulated)"
            return "FIELD_CUSTOM_VALIDATION_EXCEPTION", message, []
        return None

    def apply(self, sobject: str, id_field: str, value: str, fields: Record) -> tuple[str, bool]:
        """Upsert a checked record; (Id, created)."""
        table = self.tables.setdefault((sobject, id_field), {})
        record = table.get(value)
        created = record is None
        if record is None:
            record_id = self.new_id(_ID_PREFIXES.get(sobject, "a00"))
            record = table[value] = {"Id": record_id, id_field: value}
            self.ids[record_id] = ((sobject, id_field), value)
        record.update(fields)
        return record["Id"], created

    def upsert_many(
        self, sobject: str, id_field: str, records: list[Record], all_or_none: bool
    ) -> list[dict[str, Any]]:
        """sObject Collections upsert: one UpsertResult per record, in order."""
        prepared = []
        for record in records:
            fields = {k: v for k, v in record.items() if k != "attributes"}
            value = lookup(fields, id_field)
            fields = {k: v for k, v in fields.items() if k.casefold() != id_field.casefold()}
            prepared.append((value, fields, self.check(value, fields, id_field)))
        if all_or_none and any(failure for *_, failure in prepared):
            return [_failed(failure or _ROLLED_BACK) for *_, failure in prepared]
        results = []
        for value, fields, failure in prepared:
            if failure is not None:
                results.append(_failed(failure))
                continue
            record_id, created = self.apply(sobject, id_field, value, fields)
            results.append({"id": record_id, "success": True, "errors": [], "created": created})
        return results

    def find(self, record_id: str) -> Record | None:
        entry = self.ids.get(record_id)
        return self.tables[entry[0]][entry[1]] if entry else None

    def delete_many(self, record_ids: list[str], all_or_none: bool) -> list[Failure | None]:
        """Delete by record id; with `all_or_none`, nothing unless every one can go."""
        failures = [self._undeletable(record_id) for record_id in record_ids]
        if all_or_none and any(failures):
            return [failure or _ROLLED_BACK for failure in failures]
        for record_id, failure in zip(record_ids, failures, strict=True):
            entry = self.ids.pop(record_id, None) if failure is None else None
            if entry is not None:
                del self.tables[entry[0]][entry[1]]
                self.deleted.add(record_id)
        return failures

    def _undeletable(self, record_id: str) -> Failure | None:
        entry = self.ids.get(record_id)
        if entry is None:
            if record_id in self.deleted:
                return "ENTITY_IS_DELETED", "entity is deleted", []
            if _ID_SHAPE.match(record_id):
                return "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", []
            return "MALFORMED_ID", f"malformed id {record_id}", []
        if self.gate.rejects(entry[1]):
            message = "Your attempt to delete this record could not be completed (simulated)"
            return "DELETE_FAILED", message, []
        return None

    def select(self, sobject: str, where: str | None, values: list[str] | None) -> list[Record]:
        """Records of `sobject` whose `where` field holds one of `values` (all without)."""
        tables = [
            (key, table)
            for key, table in self.tables.items()
            if key[0].casefold() == sobject.casefold()
        ]
        if where is None or values is None:
            return [record for _, table in tables for record in table.values()]
        found: list[Record] = []
        wanted = set(values)
        for (_, id_field), table in tables:
            if id_field.casefold() == where.casefold():
                found += [table[v] for v in dict.fromkeys(values) if v in table]
            else:
                found += [r for r in table.values() if lookup(r, where) in wanted]
        return found

    def records_view(self) -> dict[str, Any]:
        records = {key: record for table in self.tables.values() for key, record in table.items()}
        return {"count": len(records), "records": records}

    # -- Bulk API 2.0 ----------------------------------------------------------------------

    def create_job(self, spec: Record, api_version: str) -> Job:
        job = Job(
            id=self.new_id("750"),
            object=spec["object"],
            external_id_field=spec["externalIdFieldName"],
            line_ending=spec.get("lineEnding") or "LF",
            delimiter=DELIMITERS[spec.get("columnDelimiter") or "COMMA"],
            api_version=api_version,
        )
        self.jobs[job.id] = job
        return job

    def process(self, job: Job) -> None:
        """UploadComplete: run every uploaded row through the same checks as the REST API."""
        job.state = "UploadComplete"
        job.polls_left = self.gate.config.job_polls
        id_field = job.external_id_field
        if not job.header:
            job.state, job.error_message = "Failed", "InvalidBatch : No data was uploaded"
            return
        column = next((i for i, n in enumerate(job.header) if n == id_field), None)
        if column is None:
            job.state = "Failed"
            job.error_message = f"InvalidBatch : Field name not found in header : {id_field}"
            return
        for row in job.rows:
            fields = dict(_cells(job.header, row, column))
            value = row[column] if column < len(row) else ""
            failure = self.check(value, fields, id_field)
            if failure is None:
                record_id, created = self.apply(job.object, id_field, value, fields)
                job.successful.append([record_id, "true" if created else "false", *row])
            else:
                code, message, names = failure
                job.failed.append(["", f"{code}:{message}:{','.join(names)} --", *row])
            job.processed += 1

    def poll(self, job: Job) -> None:
        if job.state in ("UploadComplete", "InProgress"):
            if job.polls_left > 0:
                job.polls_left -= 1
                job.state = "InProgress"
            else:
                job.state = "JobComplete"


def _failed(failure: Failure) -> dict[str, Any]:
    code, message, fields = failure
    error = {"statusCode": code, "message": message, "fields": fields}
    return {"success": False, "errors": [error], "created": False}


def _cells(header: list[str], row: list[str], skip: int) -> Iterable[tuple[str, Any]]:
    """A CSV row as fields: empty leaves a field alone, `#N/A` clears it."""
    for index, name in enumerate(header):
        if index == skip or index >= len(row) or row[index] == "":
            continue
        yield name, None if row[index] == "#N/A" else row[index]


# -- SOQL: the one shape the client (and a person poking at the simulator) asks --------------

_SOQL = re.compile(
    r"^\s*SELECT\s+(?P<fields>[\w\s,]+?)\s+FROM\s+(?P<sobject>\w+)"
    r"(?:\s+WHERE\s+(?P<where>\w+)\s*(?:IN\s*\((?P<values>.*)\)|=\s*(?P<value>'.*')))?"
    r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_LITERAL = r"'(?:[^'\\]|\\.)*'"
_LITERALS = re.compile(rf"\s*{_LITERAL}(?:\s*,\s*{_LITERAL})*\s*", re.DOTALL)
_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}


@dataclass(frozen=True)
class Query:
    fields: list[str]
    sobject: str
    where: str | None
    values: list[str] | None
    limit: int | None


def parse_soql(soql: str) -> Query | None:
    """`SELECT f, ... FROM o [WHERE f IN ('a', ...) | WHERE f = 'a'] [LIMIT n]`, or None."""
    match = _SOQL.match(soql)
    if match is None:
        return None
    fields = [name.strip() for name in match["fields"].split(",")]
    if not all(re.fullmatch(r"\w+", name) for name in fields):
        return None
    values = None
    if match["where"]:
        text = match["values"] if match["values"] is not None else match["value"]
        if not _LITERALS.fullmatch(text):
            return None
        values = [_unquote(item) for item in re.findall(_LITERAL, text, re.DOTALL)]
    limit = int(match["limit"]) if match["limit"] else None
    return Query(fields, match["sobject"], match["where"], values, limit)


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", lambda m: _UNESCAPE.get(m[1], m[1]), literal[1:-1], flags=re.DOTALL)
