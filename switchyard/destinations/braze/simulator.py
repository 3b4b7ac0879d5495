"""A local Braze workspace: the user-data endpoints Switchyard calls, over an in-memory store.

    POST /users/track   {"attributes": [...], "events": [...], "purchases": [...]}
        201 {"message": "success", "attributes_processed": n, "errors"?: [{"type",
        "input_array", "index"}]}; 400 when there is no data or more than 75 objects
    POST /users/delete  one of external_ids | user_aliases | braze_ids | email_addresses |
        phone_numbers, at most 50; 200 {"deleted": n, "message": "success"}
    POST /users/merge   {"merge_updates": [...]}, at most 50; 202 {"message": "success"}

Every vendor path wants `Authorization: Bearer <key>` (401 otherwise; any key unless the
app was built with one), refuses bodies over 4 MB with 413, and answers with
X-RateLimit-Limit / -Remaining / -Reset (UNIX seconds). The gate's one allowance stands
for Braze's per-endpoint ones and defaults to /users/track's 3,000 requests per 3 s; its
429 carries those headers, plus Retry-After when the control API forced it.

Profiles follow Braze's rules as far as Switchyard relies on them: an attributes object
names its user by external_id, user_alias, braze_id, email or phone (first found, in that
order); a missing profile is created unless `_update_existing_only` (the default for
user_alias, and braze_id, which Braze assigns); attributes are a partial update and null
unsets one, so re-sending an update changes nothing. A merge keeps the target's own
attributes, adds those only the merged profile had, and deletes the merged profile: here
at once, where Braze queues it. An email or phone matching several profiles resolves to
the most recently updated one on /users/track, and by `prioritization` on delete and
merge (nothing happens when that leaves more than one).

`/_sim/records` lists profiles keyed by the identifier value each was created with.

Run it alone: python -m switchyard.simulators.hub --only braze --port 8788
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from switchyard.simulators.control import (
    Allowance,
    FaultConfig,
    Gate,
    Refusal,
    control_routes,
    json_response,
)

TRACK_MAX_OBJECTS = 75
DELETE_MAX_IDS = 50
MERGE_MAX_UPDATES = 50
MAX_BODY_BYTES = 4 * 1024 * 1024
TRACK_ALLOWANCE = Allowance(requests=3_000, per_seconds=3)

IDENTITY_ORDER = ("external_id", "user_alias", "braze_id", "email", "phone")
FLAGS = frozenset({"_update_existing_only", "push_token_import"})
MISSING_IDENTIFIER = "'external_id' or 'braze_id' or 'user_alias' or 'email' or 'phone' is required"
NO_DATA = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
DELETE_LISTS = {
    "external_ids": "external_id",
    "user_aliases": "user_alias",
    "braze_ids": "braze_id",
    "email_addresses": "email",
    "phone_numbers": "phone",
}
_STATUS_MESSAGES = {
    400: "Bad Request",
    401: "Invalid API key",
    403: "Forbidden",
    404: "Not Found",
    413: "Request Entity Too Large",
    429: "API rate limit reached",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

Ident = tuple[str, Any]  # ("external_id", "u1"), ("user_alias", ("label", "name")), ...


class BadRequest(Exception):
    """A whole request Braze turns down with 400 and this message."""


@dataclass(slots=True)
class User:
    braze_id: str
    key: str  # the identifier value the profile was created with
    external_id: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)  # label -> name
    attributes: dict[str, Any] = field(default_factory=dict)
    touched: int = 0

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"braze_id": self.braze_id}
        if self.external_id is not None:
            out["external_id"] = self.external_id
        if self.aliases:
            out["user_aliases"] = [
                {"alias_name": name, "alias_label": label}
                for label, name in sorted(self.aliases.items())
            ]
        out.update(self.attributes)
        return out


class Workspace:
    """Profiles, with the indexes Braze resolves identifiers through."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.users: dict[str, User] = {}
        self._external: dict[str, User] = {}
        self._alias: dict[tuple[str, str], User] = {}
        self._contact: dict[tuple[str, str], dict[str, User]] = {}  # ("email", v) -> users
        self._clock = 0

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def find(self, ident: Ident, prioritization: list[str] | None = None) -> User | None:
        kind, value = ident
        if kind == "external_id":
            return self._external.get(value)
        if kind == "user_alias":
            return self._alias.get(value)
        if kind == "braze_id":
            return self.users.get(value)
        candidates = list(self._contact.get((kind, _contact_value(kind, value)), {}).values())
        if prioritization is None:  # /users/track: the most recently updated profile
            return max(candidates, key=lambda u: u.touched, default=None)
        if "identified" in prioritization:
            candidates = [u for u in candidates if u.external_id is not None]
        if "unidentified" in prioritization:
            candidates = [u for u in candidates if u.external_id is None]
        if "most_recently_updated" in prioritization:
            return max(candidates, key=lambda u: u.touched, default=None)
        return candidates[0] if len(candidates) == 1 else None

    def create(self, ident: Ident) -> User:
        kind, value = ident
        sequence = self._tick()
        key = value[1] if kind == "user_alias" else str(value)
        user = User(braze_id=f"{sequence:024x}", key=key, touched=sequence)
        self.users[user.braze_id] = user
        if kind == "external_id":
            user.external_id = value
            self._external[value] = user
        elif kind == "user_alias":
            label, name = value
            user.aliases[label] = name
            self._alias[value] = user
        else:
            self.set(user, kind, value)
        return user

    def set(self, user: User, name: str, value: Any) -> None:
        """Set (or, with None, unset) one attribute, keeping the email/phone index true."""
        old = user.attributes.get(name)
        if name in ("email", "phone") and old != value:
            if isinstance(old, str):
                index = (name, _contact_value(name, old))
                slot = self._contact.get(index, {})
                slot.pop(user.braze_id, None)
                if not slot:
                    self._contact.pop(index, None)
            if isinstance(value, str):
                slot = self._contact.setdefault((name, _contact_value(name, value)), {})
                slot[user.braze_id] = user
        if value is None:
            user.attributes.pop(name, None)
        else:
            user.attributes[name] = value
        user.touched = self._tick()

    def delete(self, user: User) -> None:
        for name in ("email", "phone"):
            self.set(user, name, None)
        self.users.pop(user.braze_id, None)
        if user.external_id is not None:
            self._external.pop(user.external_id, None)
        for label, name in user.aliases.items():
            self._alias.pop((label, name), None)

    def merge(self, merged: User, kept: User) -> None:
        for name, value in list(merged.attributes.items()):
            if name not in kept.attributes:
                self.set(kept, name, value)
        self.delete(merged)

    def records(self) -> dict[str, Any]:
        records = {user.key: user.record() for user in self.users.values()}
        return {"count": len(records), "records": records}


def _contact_value(kind: str, value: str) -> str:
    return value.strip().lower() if kind == "email" else value.strip()


def _identifier(obj: dict[str, Any]) -> Ident | str:
    """The user an object names, or the reason it names none."""
    for kind in IDENTITY_ORDER:
        if kind not in obj:
            continue
        value = obj[kind]
        if kind == "user_alias":
            name = value.get("alias_name") if isinstance(value, dict) else None
            label = value.get("alias_label") if isinstance(value, dict) else None
            if not (isinstance(name, str) and name and isinstance(label, str) and label):
                return "'user_alias' must be an object with 'alias_name' and 'alias_label'"
            return kind, (label, name)
        if not isinstance(value, str) or not value:
            return f"'{kind}' must be a non-empty string"
        if kind == "email" and "@" not in value:
            return f"'{value}' is not a valid email address"
        return kind, value
    return MISSING_IDENTIFIER


def _ident_key(ident: Ident) -> str:
    kind, value = ident
    return str(value[1]) if kind == "user_alias" else str(value)


def _merge_identifier(obj: Any) -> tuple[Ident, list[str] | None]:
    if not isinstance(obj, dict):
        raise BadRequest("'identifier_to_merge' and 'identifier_to_keep' must be objects")
    extra = set(obj) - {"external_id", "user_alias", "email", "phone", "prioritization"}
    if extra:
        raise BadRequest(f"unsupported identifier field(s): {', '.join(sorted(extra))}")
    ident = _identifier(obj)
    if isinstance(ident, str):
        raise BadRequest(ident)
    prioritization = obj.get("prioritization")
    if ident[0] in ("email", "phone"):
        return ident, _prioritization(prioritization)
    return ident, None


def _prioritization(value: Any) -> list[str]:
    allowed = {"identified", "unidentified", "most_recently_updated"}
    if not isinstance(value, list) or not value or not set(value) <= allowed:
        raise BadRequest(
            "'prioritization' is required for email and phone: a list of identified, "
            "unidentified and most_recently_updated"
        )
    if "identified" in value and "unidentified" in value:
        raise BadRequest("'prioritization' may hold identified or unidentified, not both")
    return [str(v) for v in value]


def _delete_target(kind: str, item: Any) -> tuple[Ident, list[str] | None]:
    if kind in ("external_id", "braze_id"):
        if not isinstance(item, str) or not item:
            raise BadRequest(f"'{kind}s' must hold non-empty strings")
        return (kind, item), None
    if kind == "user_alias":
        ident = _identifier({"user_alias": item})
    elif isinstance(item, dict) and kind in item:
        ident = _identifier({kind: item[kind]})
    else:
        ident = f"each entry needs '{kind}' and 'prioritization'"
    if isinstance(ident, str):
        raise BadRequest(ident)
    if kind == "user_alias":
        return ident, None
    return ident, _prioritization(item.get("prioritization"))


class BrazeSimulator:
    def __init__(self, gate: Gate, api_key: str | None) -> None:
        self.gate = gate
        self.api_key = api_key
        self.workspace = Workspace()

    # -- answering -----------------------------------------------------------------------

    def _rate_headers(self, refusal: Refusal | None = None) -> dict[str, str]:
        now = time.time()
        allowance = self.gate.allowance_headers()
        if refusal is not None and refusal.status == 429:
            wait = refusal.retry_after or 1
            limit = refusal.limit or (allowance[0] if allowance else TRACK_ALLOWANCE.requests)
            headers = {
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(math.ceil(now + wait)),
            }
            if refusal.reason == "forced":
                headers["Retry-After"] = str(wait)
            return headers
        if allowance is None:
            return {}
        limit, remaining, wait_seconds = allowance
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(math.ceil(now + wait_seconds)),
        }

    def answer(self, status: int, payload: Any, refusal: Refusal | None = None) -> Response:
        self.gate.answered(status)
        headers = self._rate_headers(refusal)
        if refusal is not None and refusal.status != 429 and refusal.retry_after is not None:
            headers["Retry-After"] = str(refusal.retry_after)
        return json_response(status, payload, headers)

    def refuse(self, refusal: Refusal) -> Response:
        message = _STATUS_MESSAGES.get(refusal.status, "Error")
        return self.answer(refusal.status, {"message": message}, refusal)

    async def _read(
        self, request: Request, count: Callable[[Any], int]
    ) -> tuple[Any, Response | None]:
        """The parsed body, or the answer that ends the request (faults, auth, size, JSON)."""
        body = await request.body()
        try:
            payload: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        records = count(payload) if isinstance(payload, dict) else 0
        refusal = await self.gate.admit(records=records, body_bytes=len(body))
        if refusal is not None:
            return None, self.refuse(refusal)
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key or (self.api_key and key != self.api_key):
            return None, self.answer(401, {"message": "Invalid API key"})
        if len(body) > MAX_BODY_BYTES:
            return None, self.answer(413, {"message": "Request Entity Too Large"})
        if not isinstance(payload, dict):
            return None, self.answer(400, {"message": "Request body must be a JSON object"})
        return payload, None

    # -- /users/track --------------------------------------------------------------------

    async def track(self, request: Request) -> Response:
        payload, ended = await self._read(request, _track_objects)
        if ended is not None:
            return ended
        arrays: dict[str, list[Any]] = {}
        for name in ("attributes", "events", "purchases"):
            value = payload.get(name)
            if value is None:
                continue
            if not isinstance(value, list):
                return self.answer(400, {"message": f"'{name}' must be an array"})
            arrays[name] = value
        total = sum(len(v) for v in arrays.values())
        if total == 0:
            return self.answer(400, {"message": NO_DATA})
        if total > TRACK_MAX_OBJECTS:
            message = (
                f"Received {total} objects; at most {TRACK_MAX_OBJECTS} attributes, events "
                "and purchases together are allowed per request"
            )
            return self.answer(400, {"message": message})
        errors: list[dict[str, Any]] = []
        result: dict[str, Any] = {"message": "success"}
        if "attributes" in arrays:
            processed = 0
            for index, obj in enumerate(arrays["attributes"]):
                reason = self._apply(obj)
                if reason is None:
                    processed += 1
                else:
                    errors.append({"type": reason, "input_array": "attributes", "index": index})
            result["attributes_processed"] = processed
        for name in ("events", "purchases"):
            if name in arrays:  # accepted and counted; nothing Switchyard reads back
                result[f"{name}_processed"] = len(arrays[name])
        if errors:
            result["errors"] = errors
        return self.answer(201, result)

    def _apply(self, obj: Any) -> str | None:
        """Apply one attributes object; the non-fatal error's type if Braze would skip it."""
        if not isinstance(obj, dict):
            return "Attributes object must be a JSON object"
        ident = _identifier(obj)
        if isinstance(ident, str):
            return ident
        kind = ident[0]
        if self.gate.rejects(_ident_key(ident)):
            return f"Invalid '{kind}': this user cannot be updated"
        update_only = obj.get("_update_existing_only", kind in ("user_alias", "braze_id"))
        if not isinstance(update_only, bool):
            return "'_update_existing_only' must be a boolean"
        workspace = self.workspace
        user = workspace.find(ident)
        if user is None:
            if update_only or kind == "braze_id":
                return None  # update-only and nobody to update: nothing happens, no error
            user = workspace.create(ident)
        for name, value in obj.items():
            if name in FLAGS or name == kind or name in ("external_id", "user_alias", "braze_id"):
                continue
            old = user.attributes.get(name)
            if type(old) is not type(value) or old != value:  # 1 is not True here
                workspace.set(user, name, value)
        return None

    # -- /users/delete -------------------------------------------------------------------

    async def delete(self, request: Request) -> Response:
        payload, ended = await self._read(request, _delete_count)
        if ended is not None:
            return ended
        present = [name for name in DELETE_LISTS if name in payload]
        if len(present) != 1:
            return self.answer(
                400,
                {"message": f"Exactly one of {', '.join(DELETE_LISTS)} must be provided"},
            )
        name = present[0]
        items = payload[name]
        if not isinstance(items, list) or not items:
            return self.answer(400, {"message": f"'{name}' must be a non-empty array"})
        if len(items) > DELETE_MAX_IDS:
            message = f"Received {len(items)} {name}; at most {DELETE_MAX_IDS} per request"
            return self.answer(400, {"message": message})
        try:
            targets = [_delete_target(DELETE_LISTS[name], item) for item in items]
        except BadRequest as error:
            return self.answer(400, {"message": str(error)})
        deleted = 0
        for ident, prioritization in targets:
            user = self.workspace.find(ident, prioritization)
            if user is not None:
                self.workspace.delete(user)
                deleted += 1
        return self.answer(200, {"deleted": deleted, "message": "success"})

    # -- /users/merge --------------------------------------------------------------------

    async def merge(self, request: Request) -> Response:
        payload, ended = await self._read(request, _merge_count)
        if ended is not None:
            return ended
        updates = payload.get("merge_updates")
        if not isinstance(updates, list) or not updates:
            return self.answer(400, {"message": "'merge_updates' must be a non-empty array"})
        if len(updates) > MERGE_MAX_UPDATES:
            message = (
                f"Received {len(updates)} merge_updates; at most {MERGE_MAX_UPDATES} per request"
            )
            return self.answer(400, {"message": message})
        try:
            pairs = [_merge_pair(update) for update in updates]
        except BadRequest as error:
            return self.answer(400, {"message": str(error)})
        for (merge_ident, merge_order), (keep_ident, keep_order) in pairs:
            merged = self.workspace.find(merge_ident, merge_order)
            kept = self.workspace.find(keep_ident, keep_order)
            if merged is not None and kept is not None and merged is not kept:
                self.workspace.merge(merged, kept)
        return self.answer(202, {"message": "success"})


def _merge_pair(update: Any) -> tuple[tuple[Ident, list[str] | None], ...]:
    if not isinstance(update, dict) or set(update) != {"identifier_to_merge", "identifier_to_keep"}:
        raise BadRequest(
            "each merge update needs exactly 'identifier_to_merge' and 'identifier_to_keep'"
        )
    return (
        _merge_identifier(update["identifier_to_merge"]),
        _merge_identifier(update["identifier_to_keep"]),
    )


def _lengths(payload: dict[str, Any], names: Iterable[str]) -> int:
    return sum(len(v) for name in names if isinstance(v := payload.get(name), list))


def _track_objects(payload: dict[str, Any]) -> int:
    return _lengths(payload, ("attributes", "events", "purchases"))


def _delete_count(payload: dict[str, Any]) -> int:
    return _lengths(payload, DELETE_LISTS)


def _merge_count(payload: dict[str, Any]) -> int:
    return _lengths(payload, ("merge_updates",))


def create_app(config: FaultConfig | None = None, api_key: str | None = None) -> Starlette:
    """The simulator; `api_key` makes it accept only that key (any Bearer key otherwise)."""
    gate = Gate(config or FaultConfig(rate_limit=TRACK_ALLOWANCE))
    simulator = BrazeSimulator(gate, api_key)
    routes: list[BaseRoute] = [
        Route("/users/track", simulator.track, methods=["POST"]),
        Route("/users/delete", simulator.delete, methods=["POST"]),
        Route("/users/merge", simulator.merge, methods=["POST"]),
    ]
    routes += control_routes(gate, simulator.workspace.records, simulator.workspace.reset)
    app = Starlette(routes=routes)
    app.state.simulator = simulator
    return app
