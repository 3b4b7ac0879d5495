"""sObject Collections: upserts by external id, and removes by record id found with SOQL.

Upsert, at most 200 records a request:

    PATCH /services/data/vXX.X/composite/sobjects/{sobject}/{externalIdField}
    {"allOrNone": false,
     "records": [{"attributes": {"type": "<sobject>"}, "<externalIdField>": key, ...fields}]}
    200 [{"id", "success", "created", "errors": [{"statusCode", "message", "fields"}]}]

The answers come in input order, one per record; a failed one is that row's rejection.

Remove: collections deletes take record ids, so the ids are looked up first,

    GET /services/data/vXX.X/query?q=SELECT Id, <field> FROM <sobject> WHERE <field> IN (...)
    200 {"totalSize", "done", "records": [{"attributes", "Id", "<field>"}], "nextRecordsUrl"?}
    DELETE /services/data/vXX.X/composite/sobjects?ids=<id>,<id>&allOrNone=false
    200 [{"id", "success", "errors"}]

A key the query does not find is already gone, which is what a remove asks for; so is a
record deleted between the query and the delete (`ENTITY_IS_DELETED`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

import orjson

from switchyard.destinations.salesforce.api import SalesforceApi
from switchyard.errors import DestinationUnavailableError
from switchyard.pipeline.checkpoints import Operation

COLLECTION_LIMIT = 200  # records per sObject Collections request
# Salesforce allows 16,384 bytes of URI plus headers; the rest is left for the headers.
QUERY_URL_BUDGET = 12_000
_ALREADY_GONE = frozenset({"ENTITY_IS_DELETED"})
_SOQL_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}

Rejection = tuple[str, str]


def reason(errors: Any) -> str:
    """`STATUS_CODE: message (fields: A, B)` for each of Salesforce's errors on a record."""
    parts = []
    for error in errors if isinstance(errors, list) else ():
        if not isinstance(error, dict):
            continue
        text = f"{error.get('statusCode') or 'ERROR'}: {error.get('message') or ''}".rstrip(": ")
        fields = error.get("fields")
        if isinstance(fields, list) and fields:
            text += f" (fields: {', '.join(str(f) for f in fields)})"
        parts.append(text)
    return "; ".join(parts) or "rejected by Salesforce (no error given)"


def _codes(errors: Any) -> set[str]:
    return (
        {str(e.get("statusCode")) for e in errors if isinstance(e, dict)}
        if isinstance(errors, list)
        else set()
    )


def _record(prefix: bytes, operation: Operation) -> bytes:
    """One record from the warehouse-rendered field JSON, without re-encoding the fields."""
    inner = (operation.fields or "{}").strip()[1:-1].strip()
    head = prefix + orjson.dumps(operation.key)
    return head + (b"," + inner.encode() if inner else b"") + b"}"


def upsert_bodies(
    sobject: str, external_id_field: str, operations: Sequence[Operation], max_bytes: int
) -> Iterator[tuple[list[Operation], bytes]]:
    """Request bodies of at most 200 records and `max_bytes` bytes, with their operations."""
    prefix = (
        b'{"attributes":{"type":'
        + orjson.dumps(sobject)
        + b"},"
        + orjson.dumps(external_id_field)
        + b":"
    )
    head, tail = b'{"allOrNone":false,"records":[', b"]}"
    chunk: list[Operation] = []
    records: list[bytes] = []
    size = len(head) + len(tail)
    for operation in operations:
        record = _record(prefix, operation)
        if chunk and (len(chunk) >= COLLECTION_LIMIT or size + len(record) + 1 > max_bytes):
            yield chunk, head + b",".join(records) + tail
            chunk, records, size = [], [], len(head) + len(tail)
        chunk.append(operation)
        records.append(record)
        size += len(record) + 1
    if chunk:
        yield chunk, head + b",".join(records) + tail


def _per_record(api: SalesforceApi, answer: Any, expected: int) -> list[dict[str, Any]]:
    if not isinstance(answer, list) or len(answer) != expected:
        got = len(answer) if isinstance(answer, list) else type(answer).__name__
        raise DestinationUnavailableError(
            f"{api.name}: expected {expected} per-record results, got {got}"
        )
    return [item if isinstance(item, dict) else {} for item in answer]


async def upsert(api: SalesforceApi, operations: Sequence[Operation]) -> list[Rejection]:
    config = api.config
    path = f"/composite/sobjects/{config.sobject}/{config.external_id_field}"
    rejections: list[Rejection] = []
    bodies = upsert_bodies(
        config.sobject, config.external_id_field, operations, config.max_upload_bytes
    )
    for chunk, body in bodies:
        answer = api.json(await api.request("PATCH", path, content=body))
        for operation, item in zip(chunk, _per_record(api, answer, len(chunk)), strict=True):
            if item.get("success") is not True:
                rejections.append((operation.key, reason(item.get("errors"))))
    return rejections


def soql_literal(value: str) -> str:
    return "'" + "".join(_SOQL_ESCAPES.get(c, c) for c in value) + "'"


def id_queries(sobject: str, field: str, keys: Sequence[str]) -> Iterator[str]:
    """SOQL selecting the ids behind `keys`, each query's URL within the URI budget."""
    head = f"SELECT Id, {field} FROM {sobject} WHERE {field} IN ("
    base = len(quote(head, safe="")) + len("/query?q=") + 200  # the path before it
    literals: list[str] = []
    size = base
    for key in keys:
        literal = soql_literal(key)
        cost = len(quote(literal, safe="")) + 3  # the encoded comma
        if literals and (len(literals) >= COLLECTION_LIMIT or size + cost > QUERY_URL_BUDGET):
            yield head + ",".join(literals) + ")"
            literals, size = [], base
        literals.append(literal)
        size += cost
    if literals:
        yield head + ",".join(literals) + ")"


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _field(record: dict[str, Any], name: str) -> Any:
    """A field of a query result; Salesforce answers with the field's own capitalisation."""
    if name in record:
        return record[name]
    folded = name.casefold()
    return next((v for k, v in record.items() if k.casefold() == folded), None)


async def find_ids(api: SalesforceApi, keys: Sequence[str]) -> list[tuple[str, str]]:
    """(record id, key) for every record whose external-id field holds one of `keys`.

    Matching ignores case, as SOQL's does: the org may hold `Ada@Example.com` for the
    normalised key `ada@example.com`.
    """
    config = api.config
    wanted = {key.casefold(): key for key in keys}
    found: list[tuple[str, str]] = []
    for soql in id_queries(config.sobject, config.external_id_field, keys):
        page = api.json(await api.request("GET", "/query", params={"q": soql}))
        while True:
            for record in page.get("records") or ():
                text = _text(_field(record, config.external_id_field))
                key = wanted.get(text.casefold()) if text is not None else None
                if key is not None and isinstance(record.get("Id"), str):
                    found.append((record["Id"], key))
            next_url = page.get("nextRecordsUrl")
            if page.get("done", True) or not isinstance(next_url, str):
                break
            page = api.json(await api.request("GET", next_url))
    return found


async def remove(api: SalesforceApi, keys: Sequence[str]) -> list[Rejection]:
    found = await find_ids(api, keys)
    rejections: dict[str, str] = {}
    for start in range(0, len(found), COLLECTION_LIMIT):
        chunk = found[start : start + COLLECTION_LIMIT]
        params = {"ids": ",".join(record_id for record_id, _ in chunk), "allOrNone": "false"}
        answer = api.json(await api.request("DELETE", "/composite/sobjects", params=params))
        for (_, key), item in zip(chunk, _per_record(api, answer, len(chunk)), strict=True):
            errors = item.get("errors")
            if item.get("success") is True or (_codes(errors) and _codes(errors) <= _ALREADY_GONE):
                continue
            # A key behind several records is one row: its first failure is its reason.
            rejections.setdefault(key, reason(errors))
    return list(rejections.items())
