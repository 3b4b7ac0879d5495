"""A local HubSpot: the CRM v3 contacts endpoints the HubSpot client (and HubSpot's own
Python SDK) use, answered in HubSpot's shapes.

    POST /crm/v3/objects/contacts/batch/upsert   {"inputs": [{"idProperty", "id", "properties"}]}
    POST /crm/v3/objects/contacts/batch/read     {"idProperty"?, "inputs": [{"id"}], "properties"}
    POST /crm/v3/objects/contacts/batch/archive  {"inputs": [{"id": <record id>}]}   -> 204
    GET  /crm/v3/properties/contacts/{name}      one property's definition

Every request needs `Authorization: Bearer <token>` (401 INVALID_AUTHENTICATION without
it). Batch answers are 200 when every input went through and 207 with `errors[]` (each
with `status`, `category`, `message`, `context: {"ids": [...]}`) when some did not; upserts
of an invalid email id and keys the fault config rejects come back that way. As at HubSpot,
what is wrong with the request as a whole is a 400 (`category: VALIDATION_ERROR`): more than
100 inputs, duplicate ids, an idProperty without unique values, and property values HubSpot
would refuse ("Property values were not valid: [...]", which fails the whole batch, one bad
row included), among them unknown properties (`PROPERTY_DOESNT_EXIST`) when the simulator
is given the account's property list.

Contacts get a numeric `hs_object_id`; an upsert that changes nothing leaves the contact,
its `lastmodifieddate` included, as it was. The rate limit (FaultConfig.rate_limit) is
reported in `X-HubSpot-RateLimit-Max/-Remaining/-Interval-Milliseconds` on every answer
and refused with HubSpot's 429 body (`errorType: RATE_LIMIT`, `policyName`), without
Retry-After as HubSpot usually does; a forced 429 carries `Retry-After: force_retry_after`.
A daily allowance (`daily_limit`) is reported in `X-HubSpot-RateLimit-Daily(-Remaining)`.

Control API (switchyard.simulators.control): /healthz, /_sim/config, /_sim/stats,
/_sim/reset, and /_sim/records: `{"count", "records": {<id value sent>: {property: value}}}`.

Run it alone: python -m switchyard.simulators.hub --only hubspot --port 8788
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from email_validator import EmailNotValidError, validate_email
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchyard.simulators.control import FaultConfig, Gate, Refusal, control_routes, json_response

MAX_INPUTS = 100
CONTACTS = "/crm/v3/objects/contacts/batch"
# Default contact properties the simulator knows without being told; of these only email
# identifies a contact (HubSpot upserts by email or by custom properties with unique values).
STANDARD_PROPERTIES = frozenset(
    {
        "email",
        "firstname",
        "lastname",
        "phone",
        "mobilephone",
        "company",
        "jobtitle",
        "website",
        "address",
        "city",
        "state",
        "zip",
        "country",
        "lifecyclestage",
        "hs_lead_status",
        "hs_object_id",
        "createdate",
        "lastmodifieddate",
    }
)
READ_ONLY = frozenset({"hs_object_id", "createdate", "lastmodifieddate"})
DEFAULT_READ = ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname")

Json = dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value: Any) -> str | None:
    """HubSpot keeps every property value as a string."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return orjson.dumps(value).decode()


def _valid_email(value: str) -> bool:
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


class Invalid(Exception):
    """A request HubSpot refuses as a whole: 400 with this message and category."""

    def __init__(self, message: str, category: str = "VALIDATION_ERROR") -> None:
        super().__init__(message)
        self.message = message
        self.category = category


@dataclass(slots=True)
class Contact:
    id: str
    key: str  # the identifier value it was created with: its key in /_sim/records
    properties: dict[str, str | None]
    created: str
    updated: str

    def public(self, names: Iterable[str]) -> Json:
        return {
            "id": self.id,
            "properties": {name: self.properties.get(name) for name in names},
            "createdAt": self.created,
            "updatedAt": self.updated,
            "archived": False,
        }


class Contacts:
    """The account's contacts by record id, with lookups by unique property value."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.by_id: dict[str, Contact] = {}
        self._indexes: dict[str, dict[str, str]] = {}
        self._ids: Iterator[int] = itertools.count(1001)

    def find(self, prop: str, value: str) -> Contact | None:
        if prop == "hs_object_id":
            return self.by_id.get(value)
        index = self._indexes.get(prop)
        if index is None:
            # Indexed the first time it is asked for, then kept up to date on every write.
            index = self._indexes[prop] = {
                v: c.id for c in self.by_id.values() if (v := c.properties.get(prop))
            }
        record_id = index.get(value)
        return None if record_id is None else self.by_id[record_id]

    def upsert(
        self, prop: str, value: str, properties: dict[str, str | None]
    ) -> tuple[Contact, bool]:
        contact, now = self.find(prop, value), _now()
        if contact is None:
            record_id = str(next(self._ids))
            contact = Contact(record_id, value, {}, now, now)
            contact.properties.update(
                {"hs_object_id": record_id, "createdate": now, "lastmodifieddate": now}
            )
            self.by_id[record_id] = contact
            self._write(contact, {prop: value, **properties})
            return contact, True
        changed = {k: v for k, v in properties.items() if contact.properties.get(k) != v}
        if changed:
            contact.updated = contact.properties["lastmodifieddate"] = now
            self._write(contact, changed)
        return contact, False

    def _write(self, contact: Contact, changes: dict[str, str | None]) -> None:
        for prop, value in changes.items():
            index = self._indexes.get(prop)
            if index is not None:
                old = contact.properties.get(prop)
                if old:
                    index.pop(old, None)
                if value:
                    index[value] = contact.id
            contact.properties[prop] = value

    def archive(self, record_id: str) -> None:
        contact = self.by_id.pop(record_id, None)
        if contact is None:
            return
        for prop, index in self._indexes.items():
            value = contact.properties.get(prop)
            if value:
                index.pop(value, None)

    def view(self) -> Json:
        return {
            "count": len(self.by_id),
            "records": {c.key: dict(c.properties) for c in self.by_id.values()},
        }


def _item_error(record_id: str, category: str, message: str, code: str | None = None) -> Json:
    details = [{"message": message, "code": code}] if code else []
    return {
        "status": "error",
        "category": category,
        "message": message,
        "context": {"ids": [record_id]},
        "errors": details,
        "links": {},
    }


def _batch_answer(results: list[Json], errors: list[Json], started: str) -> tuple[int, Json]:
    body: Json = {
        "status": "COMPLETE",
        "results": results,
        "requestedAt": started,
        "startedAt": started,
        "completedAt": _now(),
    }
    if not errors:
        return 200, body
    body["numErrors"] = len(errors)
    body["errors"] = errors
    return 207, body


def _inputs(body: Any) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise Invalid("Invalid input JSON: expected an object with an `inputs` array")
    inputs: list[Any] = body["inputs"]
    if len(inputs) > MAX_INPUTS:
        raise Invalid(
            f"The maximum number of inputs supported in a batch request is {MAX_INPUTS}, "
            f"got {len(inputs)}. Please reduce the number of items and try again"
        )
    return inputs


def _ids(inputs: list[Any]) -> list[str]:
    ids = []
    for item in inputs:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            raise Invalid("Invalid input JSON: every input needs a non-empty string `id`")
        ids.append(item["id"])
    duplicates = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) < len(ids) else []
    if duplicates:
        raise Invalid(f"Duplicate IDs found in batch input: {duplicates}")
    return ids


class HubSpotSimulator:
    def __init__(
        self,
        gate: Gate,
        properties: Iterable[str] | None,
        unique_properties: Iterable[str],
        token: str | None,
        daily_limit: int | None,
    ) -> None:
        self.gate = gate
        self.contacts = Contacts()
        # None: every property name exists (custom properties are taken as created).
        self.properties = None if properties is None else STANDARD_PROPERTIES | set(properties)
        self.unique = frozenset(unique_properties)
        self.token = token
        self.daily_limit = daily_limit
        self.daily_used = 0

    def reset(self) -> None:
        self.contacts.reset()
        self.daily_used = 0

    # -- what every answer shares ------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        allowance, limit = self.gate.allowance_headers(), self.gate.config.rate_limit
        if allowance is not None and limit is not None:
            headers["X-HubSpot-RateLimit-Max"] = str(allowance[0])
            headers["X-HubSpot-RateLimit-Remaining"] = str(allowance[1])
            headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = str(
                round(limit.per_seconds * 1000)
            )
        if self.daily_limit is not None:
            headers["X-HubSpot-RateLimit-Daily"] = str(self.daily_limit)
            remaining = max(0, self.daily_limit - self.daily_used)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(remaining)
        return headers

    def answer(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        self.gate.answered(status)
        all_headers = {**self._headers(), **(headers or {})}
        if status == 204:
            return Response(status_code=204, headers=all_headers)
        return json_response(status, payload, all_headers)

    def error(self, status: int, message: str, category: str, **extra: Any) -> Response:
        payload = {
            "status": "error",
            "message": message,
            "correlationId": str(uuid.uuid4()),
            "category": category,
            **extra,
        }
        return self.answer(status, payload)

    def refuse(self, refusal: Refusal) -> Response:
        if refusal.status == 429:
            headers = {}
            if refusal.reason == "forced" and refusal.retry_after is not None:
                headers["Retry-After"] = str(refusal.retry_after)
            return self.answer(429, self._rate_limited("ten_secondly_rolling"), headers)
        headers = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after else {}
        category, message = {
            401: ("INVALID_AUTHENTICATION", "Authentication credentials not found."),
            403: ("MISSING_SCOPES", "This app hasn't been granted all required scopes."),
            404: ("OBJECT_NOT_FOUND", "Resource not found"),
            409: ("CONFLICT", "Conflict"),
        }.get(refusal.status, ("VALIDATION_ERROR", "Invalid request"))
        if refusal.status >= 500:
            category, message = "INTERNAL_ERROR", "internal error"
        payload = {
            "status": "error",
            "message": message,
            "correlationId": str(uuid.uuid4()),
            "category": category,
        }
        return self.answer(refusal.status, payload, headers)

    @staticmethod
    def _rate_limited(policy: str) -> Json:
        return {
            "status": "error",
            "message": f"You have reached your {policy} limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": policy.upper(),
        }

    async def enter(self, request: Request, records: int = 0, body: bytes = b"") -> Response | None:
        """Authentication, then the gate and the daily allowance: an answer, or None to go on."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token or (self.token and token != self.token):
            return self.error(
                401,
                "Authentication credentials not found. This API supports OAuth 2.0 and "
                "private app access tokens.",
                "INVALID_AUTHENTICATION",
            )
        refusal = await self.gate.admit(records=records, body_bytes=len(body))
        if refusal is not None:
            return self.refuse(refusal)
        if self.daily_limit is not None:
            if self.daily_used >= self.daily_limit:
                return self.answer(429, self._rate_limited("daily"))
            self.daily_used += 1
        return None

    async def _batch(self, request: Request) -> tuple[Any, bytes, Response | None]:
        raw = await request.body()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        inputs = body.get("inputs") if isinstance(body, dict) else None
        records = len(inputs) if isinstance(inputs, list) else 0
        return body, raw, await self.enter(request, records, raw)

    # -- the vendor's endpoints --------------------------------------------------------------

    async def upsert(self, request: Request) -> Response:
        started = _now()
        body, _, early = await self._batch(request)
        if early is not None:
            return early
        try:
            rows = self._upsert_rows(_inputs(body))
        except Invalid as invalid:
            return self.error(400, invalid.message, invalid.category)
        results, errors = [], []
        for id_property, record_id, properties in rows:
            if id_property == "email" and not _valid_email(record_id):
                message = f"Email address {record_id} is invalid"
                errors.append(_item_error(record_id, "VALIDATION_ERROR", message, "INVALID_EMAIL"))
            elif self.gate.rejects(record_id):
                message = f"Property values were not valid for {record_id} (rejected by rule)"
                errors.append(_item_error(record_id, "VALIDATION_ERROR", message))
            else:
                contact, new = self.contacts.upsert(id_property, record_id, properties)
                result = contact.public([id_property, *properties])
                result["new"] = new
                results.append(result)
        return self.answer(*_batch_answer(results, errors, started))

    def _upsert_rows(self, inputs: list[Any]) -> list[tuple[str, str, dict[str, str | None]]]:
        ids = _ids(inputs)
        rows, problems = [], []
        for item, record_id in zip(inputs, ids, strict=True):
            id_property, properties = item.get("idProperty"), item.get("properties")
            if not isinstance(id_property, str) or not isinstance(properties, dict):
                raise Invalid("Invalid input JSON: every input needs `idProperty` and `properties`")
            self._check_unique(id_property)
            if id_property == "email":
                record_id = record_id.strip().lower()
            values: dict[str, str | None] = {}
            for name, value in properties.items():
                problem = self._check_value(name, value)
                if problem is not None:
                    problems.append(problem)
                    continue
                text = _text(value)
                values[name] = text.strip().lower() if name == "email" and text else text
            rows.append((id_property, record_id, values))
        if problems:
            # One bad value fails the whole batch, as at HubSpot.
            raise Invalid("Property values were not valid: " + orjson.dumps(problems).decode())
        return rows

    def _check_unique(self, id_property: str) -> None:
        known = self.properties is None or id_property in self.properties
        custom_unique = id_property in self.unique or (
            self.properties is None and id_property not in STANDARD_PROPERTIES
        )
        if not known:
            raise Invalid(f"Property {id_property!r} does not exist", "PROPERTY_DOESNT_EXIST")
        if id_property != "email" and not custom_unique:
            raise Invalid(f"Unable to perform update/upsert by non-unique property {id_property}")

    def _check_value(self, name: str, value: Any) -> Json | None:
        def problem(error: str, message: str) -> Json:
            return {"isValid": False, "message": message, "error": error, "name": name}

        if self.properties is not None and name not in self.properties:
            return problem("PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist')
        if name in READ_ONLY:
            return problem("READ_ONLY_VALUE", f'"{name}" is a read only property')
        if isinstance(value, dict | list):
            return problem("INVALID_STRING", f"{value!r} is not a valid value for {name}")
        if name == "email" and value not in (None, "") and not _valid_email(str(value)):
            return problem("INVALID_EMAIL", f"Email address {value} is invalid")
        return None

    async def read(self, request: Request) -> Response:
        started = _now()
        body, _, early = await self._batch(request)
        if early is not None:
            return early
        try:
            ids = _ids(_inputs(body))
            id_property = body.get("idProperty") or "hs_object_id"
            names = body.get("properties") or list(DEFAULT_READ)
            if not isinstance(id_property, str) or not isinstance(names, list):
                raise Invalid("Invalid input JSON: `idProperty` and `properties` are malformed")
            if not all(isinstance(name, str) for name in names):
                raise Invalid("Invalid input JSON: property names must be strings")
        except Invalid as invalid:
            return self.error(400, invalid.message, invalid.category)
        shown = list(dict.fromkeys([*names, "hs_object_id", "createdate", "lastmodifieddate"]))
        results, missing = [], []
        for record_id in ids:
            value = record_id.strip().lower() if id_property == "email" else record_id
            contact = self.contacts.find(id_property, value)
            if contact is None:
                missing.append(record_id)
            else:
                results.append(contact.public(shown))
        errors = []
        if missing:
            errors.append(
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": "Could not get some CONTACT objects, they may be deleted or "
                    "not exist. Check that ids are valid.",
                    "context": {"ids": missing},
                    "errors": [],
                    "links": {},
                }
            )
        return self.answer(*_batch_answer(results, errors, started))

    async def archive(self, request: Request) -> Response:
        body, _, early = await self._batch(request)
        if early is not None:
            return early
        try:
            ids = _ids(_inputs(body))
        except Invalid as invalid:
            return self.error(400, invalid.message, invalid.category)
        for record_id in ids:
            self.contacts.archive(record_id)
        return self.answer(204, None)

    async def property(self, request: Request) -> Response:
        early = await self.enter(request)
        if early is not None:
            return early
        name = request.path_params["name"]
        if self.properties is not None and name not in self.properties:
            return self.error(404, f"Unable to find property {name}", "OBJECT_NOT_FOUND")
        unique = name in self.unique or (
            self.properties is None and name not in STANDARD_PROPERTIES
        )
        return self.answer(
            200,
            {
                "name": name,
                "label": name,
                "type": "string",
                "fieldType": "text",
                "groupName": "contactinformation",
                "description": "",
                "options": [],
                "hasUniqueValue": unique,
                "hidden": False,
                "formField": True,
                "calculated": False,
                "externalOptions": False,
                "archived": False,
            },
        )


def create_app(
    *,
    properties: Iterable[str] | None = None,
    unique_properties: Iterable[str] = (),
    token: str | None = None,
    daily_limit: int | None = None,
    faults: FaultConfig | None = None,
) -> Starlette:
    """The simulator as an ASGI app.

    `properties`: the account's custom contact properties (beside the standard ones); None
    takes every name as an existing property. `unique_properties`: custom properties with
    unique values, which upserts may use as idProperty (with `properties=None`, any name
    that is not a standard property is taken as one). `token`: the one access token
    accepted (any bearer token when None). `daily_limit`: requests per day.
    """
    sim = HubSpotSimulator(Gate(faults), properties, unique_properties, token, daily_limit)
    routes = [
        Route(f"{CONTACTS}/upsert", sim.upsert, methods=["POST"]),
        Route(f"{CONTACTS}/read", sim.read, methods=["POST"]),
        Route(f"{CONTACTS}/archive", sim.archive, methods=["POST"]),
        Route("/crm/v3/properties/contacts/{name}", sim.property, methods=["GET"]),
        *control_routes(sim.gate, sim.contacts.view, sim.reset),
    ]
    app = Starlette(routes=routes)
    app.state.simulator = sim
    return app
