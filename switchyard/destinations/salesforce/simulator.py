"""A local Salesforce org: the REST paths Switchyard and simple-salesforce use, and their answers.

Under `/services/data/vXX.X` (any version), with `Authorization: Bearer <token>`:

    PATCH  /composite/sobjects/{sobject}/{externalIdField}   collections upsert, <= 200
           200 [{"id", "success", "created", "errors": [{"statusCode", "message", "fields"}]}]
           400 [{"errorCode": "EXCEEDED_ID_LIMIT", ...}] above 200 records
    DELETE /composite/sobjects?ids=...&allOrNone=false       200 [{"id", "success", "errors"}]
    GET    /query?q=SELECT ... WHERE f IN (...)   /query/{locator}   (2,000 rows a page)
    PATCH  /sobjects/{sobject}/{field}/{value}    201 created / 200 updated (single upsert)
    GET    /sobjects/{sobject}/{field}/{value}    /sobjects/{sobject}/{id}   DELETE .../{id}
    GET    /limits                                {"DailyApiRequests": {"Max", "Remaining"}}
    POST   /jobs/ingest          PUT /jobs/ingest/{id}/batches (text/csv, <= 100 MB)
    PATCH  /jobs/ingest/{id}     GET /jobs/ingest/{id}   DELETE /jobs/ingest/{id}
    GET    /jobs/ingest/{id}/successfulResults | failedResults | unprocessedRecords

Errors are Salesforce's list `[{"message", "errorCode"}]`: 401 `INVALID_SESSION_ID` without a
bearer token, 403 `REQUEST_LIMIT_EXCEEDED` over the configured rate limit (Salesforce has no
429; a `force_status` 429 is answered as asked, in the same words). Both carry `Retry-After`
(real Salesforce sends none). Every answer carries `Sforce-Limit-Info: api-usage=<used>/<max>`:
against the rate limit's bucket when one is set, else against `daily_allocation`.
A job reports InProgress for `job_polls` polls after UploadComplete, then JobComplete.

Control API: GET /healthz, GET|PUT /_sim/config, GET /_sim/stats, GET /_sim/records
(records keyed by their external-id value), POST /_sim/reset.

Run it alone: python -m switchyard.simulators.hub --only salesforce --port 8788
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from switchyard.destinations.salesforce.org import (
    DELIMITERS,
    QUERY_PAGE,
    Job,
    Org,
    Record,
    lookup,
    parse_soql,
)
from switchyard.simulators.control import FaultConfig, Gate, Refusal, control_routes

COLLECTION_LIMIT = 200
MAX_UPLOAD_BYTES = 100_000_000
MAX_URI_BYTES = 16_384
_VERSION = re.compile(r"^v\d{2,3}\.\d$")
_RESULTS = ("successfulResults", "failedResults", "unprocessedRecords")
_TERMINAL = ("JobComplete", "Failed", "Aborted")
_FORCED = {
    400: ("JSON_PARSER_ERROR", "Simulated bad request"),
    401: ("INVALID_SESSION_ID", "Session expired or invalid"),
    403: ("API_DISABLED_FOR_ORG", "API is not enabled for this Organization or Partner"),
    404: ("NOT_FOUND", "The requested resource does not exist"),
    405: ("METHOD_NOT_ALLOWED", "HTTP Method not allowed"),
    503: ("SERVER_UNAVAILABLE", "Server temporarily unavailable"),
}
_LIMIT = ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
_UNKNOWN = ("UNKNOWN_EXCEPTION", "An unexpected error occurred (simulated).")

Handler = Callable[[Request], Awaitable[Response]]


class SalesforceSimulator:
    def __init__(
        self,
        config: FaultConfig | None,
        access_token: str | None,
        daily_allocation: int,
        clock: Callable[[], float],
    ) -> None:
        self.gate = Gate(config, clock)
        self.org = Org(self.gate)
        self.access_token = access_token
        self.daily_allocation = daily_allocation

    # -- the front door ------------------------------------------------------------------

    def reply(
        self,
        status: int,
        payload: Any = None,
        headers: dict[str, str] | None = None,
        *,
        text: str | None = None,
    ) -> Response:
        self.gate.answered(status)
        all_headers = {"Sforce-Limit-Info": self._usage(), **(headers or {})}
        if status == 204 or (payload is None and text is None):
            return Response(status_code=status, headers=all_headers)
        if text is not None:
            return Response(text, status, all_headers, media_type="text/csv")
        return Response(orjson.dumps(payload), status, all_headers, media_type="application/json")

    def error(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> Response:
        return self.reply(status, [{"message": message, "errorCode": code}], headers)

    def _usage(self) -> str:
        allowance = self.gate.allowance_headers()
        if allowance is not None:
            limit, remaining, _ = allowance
            return f"api-usage={limit - remaining}/{limit}"
        return f"api-usage={self.gate.stats.requests}/{self.daily_allocation}"

    def refuse(self, refusal: Refusal) -> Response:
        headers = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after else None
        if refusal.status == 429:
            # Salesforce's own answer over the limit is a 403; a forced 429 stays a 429.
            status = 429 if refusal.reason == "forced" else 403
            return self.error(status, *_LIMIT, headers)
        code, message = _FORCED.get(refusal.status, _UNKNOWN)
        return self.error(refusal.status, code, message, headers)

    async def front(
        self, request: Request, records: int = 0, body_bytes: int = 0
    ) -> Response | None:
        """Faults, the rate limit, the URI limit, the version and the token: None lets it in."""
        refusal = await self.gate.admit(records=records, body_bytes=body_bytes)
        if refusal is not None:
            return self.refuse(refusal)
        uri = len(request.url.path) + len(request.url.query) + 1
        if uri > MAX_URI_BYTES:
            return self.error(414, "URI_TOO_LONG", f"URI of {uri} bytes exceeds {MAX_URI_BYTES}")
        if not _VERSION.match(request.path_params.get("version", "")):
            return self.error(404, *_FORCED[404])
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        valid = scheme.lower() in ("bearer", "oauth") and token.strip()
        if not valid or (self.access_token is not None and token.strip() != self.access_token):
            return self.error(401, *_FORCED[401])
        return None

    # -- REST: records ---------------------------------------------------------------------

    async def collections_upsert(self, request: Request) -> Response:
        body = await request.body()
        doc = _json(body)
        records = doc.get("records") if isinstance(doc, dict) else None
        count = len(records) if isinstance(records, list) else 0
        if early := await self.front(request, count, len(body)):
            return early
        sobject, id_field = request.path_params["sobject"], request.path_params["field"]
        if not isinstance(records, list):
            return self.error(400, "JSON_PARSER_ERROR", "Expected a JSON object with records")
        if count > COLLECTION_LIMIT:
            message = "record limit reached. cannot submit more than 200 records into this call"
            return self.error(400, "EXCEEDED_ID_LIMIT", message)
        for record in records:
            attributes = record.get("attributes") if isinstance(record, dict) else None
            kind = attributes.get("type") if isinstance(attributes, dict) else None
            if not isinstance(kind, str):
                return self.error(400, "INVALID_TYPE", "Must send a concrete entity type.")
            if kind.casefold() != sobject.casefold():
                return self.error(400, "INVALID_TYPE", f"{kind} records can't be sent to {sobject}")
        all_or_none = doc.get("allOrNone") is True if isinstance(doc, dict) else False
        return self.reply(200, self.org.upsert_many(sobject, id_field, records, all_or_none))

    async def collections_delete(self, request: Request) -> Response:
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        if early := await self.front(request, len(ids)):
            return early
        if not ids:
            return self.error(400, "MISSING_ARGUMENT", "ids parameter is required")
        if len(ids) > COLLECTION_LIMIT:
            message = "record limit reached. cannot submit more than 200 records into this call"
            return self.error(400, "EXCEEDED_ID_LIMIT", message)
        all_or_none = request.query_params.get("allOrNone", "false").lower() == "true"
        failures = self.org.delete_many(ids, all_or_none)
        return self.reply(
            200,
            [
                {"id": i, "success": f is None, "errors": [] if f is None else [_error(f)]}
                for i, f in zip(ids, failures, strict=True)
            ],
        )

    async def query(self, request: Request) -> Response:
        if early := await self.front(request):
            return early
        soql = request.query_params.get("q", "")
        parsed = parse_soql(soql)
        if parsed is None:
            return self.error(400, "MALFORMED_QUERY", f"unexpected token in: {soql[:200]}")
        records = self.org.select(parsed.sobject, parsed.where, parsed.values)
        if parsed.limit is not None:
            records = records[: parsed.limit]
        version = request.path_params["version"]
        rows = [
            {
                "attributes": {
                    "type": parsed.sobject,
                    "url": f"/services/data/{version}/sobjects/{parsed.sobject}/{r['Id']}",
                },
                **{name: lookup(r, name) for name in parsed.fields},
            }
            for r in records
        ]
        return self.reply(200, self._page(version, rows, len(rows)))

    async def query_more(self, request: Request) -> Response:
        if early := await self.front(request):
            return early
        locator = request.path_params["locator"]
        rows = self.org.cursors.pop(locator, None)
        if rows is None:
            return self.error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        total = int(locator.rsplit("-", 1)[-1]) + len(rows)
        return self.reply(200, self._page(request.path_params["version"], rows, total))

    def _page(self, version: str, rows: list[Record], total: int) -> dict[str, Any]:
        page: dict[str, Any] = {"totalSize": total, "done": len(rows) <= QUERY_PAGE}
        if len(rows) > QUERY_PAGE:
            served = total - len(rows) + QUERY_PAGE
            locator = f"{self.org.new_id('01g')}-{served}"
            self.org.cursors[locator] = rows[QUERY_PAGE:]
            page["nextRecordsUrl"] = f"/services/data/{version}/query/{locator}"
        page["records"] = rows[:QUERY_PAGE]
        return page

    async def sobject_upsert(self, request: Request) -> Response:
        body = await request.body()
        fields = _json(body)
        if early := await self.front(request, 1, len(body)):
            return early
        params = request.path_params
        if not isinstance(fields, dict):
            return self.error(400, "JSON_PARSER_ERROR", "Expected a JSON object")
        fields = {k: v for k, v in fields.items() if k != "attributes"}
        failure = self.org.check(params["value"], fields, params["field"])
        if failure is not None:
            code, message, names = failure
            return self.reply(400, [{"message": message, "errorCode": code, "fields": names}])
        record_id, created = self.org.apply(
            params["sobject"], params["field"], params["value"], fields
        )
        answer = {"id": record_id, "success": True, "errors": [], "created": created}
        return self.reply(201 if created else 200, answer)

    async def sobject_get(self, request: Request) -> Response:
        if early := await self.front(request):
            return early
        params = request.path_params
        if "field" in params:
            found = self.org.select(params["sobject"], params["field"], [params["value"]])
            record = found[0] if found else None
        else:
            record = self.org.find(params["id"])
        if record is None:
            return self.error(404, *_FORCED[404])
        url = f"/services/data/{params['version']}/sobjects/{params['sobject']}/{record['Id']}"
        return self.reply(200, {"attributes": {"type": params["sobject"], "url": url}, **record})

    async def sobject_delete(self, request: Request) -> Response:
        if early := await self.front(request, 1):
            return early
        failure = self.org.delete_many([request.path_params["id"]], all_or_none=False)[0]
        if failure is not None:
            status = 400 if failure[0] == "DELETE_FAILED" else 404
            return self.reply(status, [{"message": failure[1], "errorCode": failure[0]}])
        return self.reply(204)

    async def limits(self, request: Request) -> Response:
        if early := await self.front(request):
            return early
        allowance = self.gate.allowance_headers()
        used, most = (
            (allowance[0] - allowance[1], allowance[0])
            if allowance
            else (self.gate.stats.requests, self.daily_allocation)
        )
        return self.reply(200, {"DailyApiRequests": {"Max": most, "Remaining": most - used}})

    # -- Bulk API 2.0 ----------------------------------------------------------------------

    async def create_job(self, request: Request) -> Response:
        body = await request.body()
        spec = _json(body)
        if early := await self.front(request, 0, len(body)):
            return early
        problem = _job_problem(spec)
        if problem is not None:
            return self.error(400, "INVALIDJOB", problem)
        job = self.org.create_job(spec, request.path_params["version"])
        return self.reply(200, job.info())

    def _job(self, request: Request) -> Job | Response:
        job = self.org.jobs.get(request.path_params["job"])
        if job is None:
            return self.error(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    async def upload(self, request: Request) -> Response:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_UPLOAD_BYTES:
            if early := await self.front(request, 0, int(length)):
                return early
            return self.error(400, "INVALIDBATCH", f"upload exceeds {MAX_UPLOAD_BYTES} bytes")
        body = await request.body()
        job = self.org.jobs.get(request.path_params["job"])
        rows = _rows(body, job) if job is not None else None
        if early := await self.front(request, max(0, len(rows or ()) - 1), len(body)):
            return early
        found = self._job(request)
        if not isinstance(found, Job):
            return found
        if found.state != "Open":
            return self.error(409, "INVALIDJOBSTATE", f"Job is {found.state}, not Open")
        if not request.headers.get("content-type", "").startswith("text/csv"):
            return self.error(400, "INVALIDJOB", "Content-Type must be text/csv")
        if len(body) > MAX_UPLOAD_BYTES:
            return self.error(400, "INVALIDBATCH", f"upload exceeds {MAX_UPLOAD_BYTES} bytes")
        if not rows:
            return self.error(400, "INVALIDBATCH", "CSV data is empty or not UTF-8")
        if found.header and rows[0] != found.header:
            return self.error(400, "INVALIDBATCH", "header differs from the job's first upload")
        found.header = rows[0]
        found.rows += rows[1:]
        return self.reply(201)

    async def job_state(self, request: Request) -> Response:
        body = await request.body()
        if early := await self.front(request, 0, len(body)):
            return early
        found = self._job(request)
        if not isinstance(found, Job):
            return found
        doc = _json(body)
        state = doc.get("state") if isinstance(doc, dict) else None
        if state == "UploadComplete" and found.state == "Open":
            self.org.process(found)
        elif state == "Aborted" and found.state not in _TERMINAL:
            found.state = "Aborted"
        else:
            return self.error(409, "INVALIDJOBSTATE", f"Job is {found.state}; can't set {state}")
        return self.reply(200, found.info())

    async def job_info(self, request: Request) -> Response:
        if early := await self.front(request):
            return early
        found = self._job(request)
        if not isinstance(found, Job):
            return found
        self.org.poll(found)
        return self.reply(200, found.info())

    async def job_delete(self, request: Request) -> Response:
        if early := await self.front(request):
            return early
        found = self._job(request)
        if not isinstance(found, Job):
            return found
        if found.state not in ("UploadComplete", "JobComplete", "Failed", "Aborted"):
            return self.error(409, "INVALIDJOBSTATE", f"Job is {found.state}")
        del self.org.jobs[found.id]
        return self.reply(204)

    async def job_results(self, request: Request) -> Response:
        if early := await self.front(request):
            return early
        found = self._job(request)
        if not isinstance(found, Job):
            return found
        kind = request.path_params["kind"]
        if kind not in _RESULTS:
            return self.error(404, *_FORCED[404])
        if found.state not in _TERMINAL:
            return self.error(409, "INVALIDJOBSTATE", f"Job is {found.state}, not finished")
        return self.reply(200, text=found.results_csv(kind))


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _error(failure: tuple[str, str, list[str]]) -> dict[str, Any]:
    return {"statusCode": failure[0], "message": failure[1], "fields": failure[2]}


def _job_problem(spec: Any) -> str | None:
    if not isinstance(spec, dict):
        return "The job definition must be a JSON object"
    if spec.get("operation") != "upsert":
        return f"The simulator runs upsert jobs only, not {spec.get('operation')!r}"
    if not isinstance(spec.get("object"), str) or not spec["object"]:
        return "object is required"
    if not isinstance(spec.get("externalIdFieldName"), str) or not spec["externalIdFieldName"]:
        return "externalIdFieldName is required for upsert"
    if spec.get("contentType", "CSV") != "CSV":
        return "contentType must be CSV"
    if spec.get("lineEnding", "LF") not in ("LF", "CRLF"):
        return "lineEnding must be LF or CRLF"
    if spec.get("columnDelimiter", "COMMA") not in DELIMITERS:
        return f"columnDelimiter must be one of {', '.join(DELIMITERS)}"
    return None


def _rows(body: bytes, job: Job) -> list[list[str]] | None:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=job.delimiter))
    return [row for row in rows if row] or None


def create_app(
    config: FaultConfig | None = None,
    *,
    access_token: str | None = None,
    daily_allocation: int = 5_000_000,
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """The simulator as an ASGI app; its state is at `app.state.simulator`.

    `access_token`: the only bearer token accepted (any non-empty one when None).
    `daily_allocation`: the `api-usage` maximum reported when no rate limit is set.
    """
    sim = SalesforceSimulator(config, access_token, daily_allocation, clock)
    data = "/services/data/{version}"
    ingest = data + "/jobs/ingest"
    vendor: list[tuple[str, Handler, str]] = [
        ("/composite/sobjects/{sobject}/{field}", sim.collections_upsert, "PATCH"),
        ("/composite/sobjects", sim.collections_delete, "DELETE"),
        ("/query", sim.query, "GET"),
        ("/query/", sim.query, "GET"),
        ("/query/{locator}", sim.query_more, "GET"),
        ("/sobjects/{sobject}/{field}/{value}", sim.sobject_upsert, "PATCH"),
        ("/sobjects/{sobject}/{field}/{value}", sim.sobject_get, "GET"),
        ("/sobjects/{sobject}/{id}", sim.sobject_get, "GET"),
        ("/sobjects/{sobject}/{id}", sim.sobject_delete, "DELETE"),
        ("/limits", sim.limits, "GET"),
        ("/limits/", sim.limits, "GET"),
    ]
    jobs: list[tuple[str, Handler, str]] = [
        ("", sim.create_job, "POST"),
        ("/", sim.create_job, "POST"),
        ("/{job}", sim.job_info, "GET"),
        ("/{job}", sim.job_state, "PATCH"),
        ("/{job}", sim.job_delete, "DELETE"),
        ("/{job}/batches", sim.upload, "PUT"),
        ("/{job}/batches/", sim.upload, "PUT"),
        ("/{job}/{kind}", sim.job_results, "GET"),
        ("/{job}/{kind}/", sim.job_results, "GET"),
    ]
    routes: list[BaseRoute] = [
        Route(data + path, handler, methods=[method]) for path, handler, method in vendor
    ]
    routes += [Route(ingest + path, handler, methods=[method]) for path, handler, method in jobs]
    routes += control_routes(sim.gate, sim.org.records_view, sim.org.reset)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        code, message = _FORCED.get(status, _UNKNOWN)
        return sim.error(status, code, message)

    app = Starlette(routes=routes, exception_handlers={404: http_error, 405: http_error})
    app.router.redirect_slashes = False  # a redirect would lose a hub's mount prefix
    app.state.simulator = sim
    return app
