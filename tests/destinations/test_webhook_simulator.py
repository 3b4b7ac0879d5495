"""The webhook simulator speaks the webhook protocol exactly, so the client can be tested on it.

Requests are signed here from the protocol's definition, not with the simulator's own code.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchyard.destinations.webhook.simulator import SimulatorConfig, apply_operations, create_app
from switchyard.settings import DEV_WEBHOOK_SECRET
from switchyard.simulators.faults import key_rejected
from switchyard.simulators.server import run_in_thread

SECRET = "test-webhook-secret"
REPO = Path(__file__).resolve().parents[2]


class FakeClock:
    """Monotonic time that only moves when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sign(body: bytes, timestamp: str, secret: str = SECRET) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + digest.hexdigest()


def batch_body(operations: list[Any], batch_id: str = "b-1") -> bytes:
    doc = {"batch_id": batch_id, "sync": "vip-to-hook", "contract_version": 3}
    return orjson.dumps({**doc, "operations": operations})


def upserts(keys: list[str], **fields: Any) -> list[dict[str, Any]]:
    return [{"op": "upsert", "key": key, "fields": dict(fields)} for key in keys]


class Sender:
    """A minimal, correct client of the protocol; tests bend one thing at a time."""

    def __init__(self, http: httpx.AsyncClient | httpx.Client) -> None:
        self.http = http
        self._keys = itertools.count(1)

    def request(
        self,
        operations: list[Any],
        *,
        hook: str = "crm",
        batch_id: str = "b-1",
        idempotency_key: str | None = None,
        secret: str = SECRET,
        timestamp: int | None = None,
        body: bytes | None = None,
        drop: tuple[str, ...] = (),
    ) -> httpx.Request:
        body = batch_body(operations, batch_id) if body is None else body
        ts = str(int(time.time()) if timestamp is None else timestamp)
        headers = {
            "Content-Type": "application/json",
            "X-Switchyard-Timestamp": ts,
            "X-Switchyard-Signature": sign(body, ts, secret),
            "Idempotency-Key": idempotency_key or f"idem-{next(self._keys)}",
        }
        for name in drop:
            del headers[name]
        return self.http.build_request("POST", f"/hooks/{hook}", content=body, headers=headers)

    async def send(self, operations: list[Any], **options: Any) -> httpx.Response:
        assert isinstance(self.http, httpx.AsyncClient)
        return await self.http.send(self.request(operations, **options))

    async def configure(self, **patch: Any) -> dict[str, Any]:
        assert isinstance(self.http, httpx.AsyncClient)
        response = await self.http.put("/_sim/config", json=patch)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def stats(self) -> dict[str, Any]:
        assert isinstance(self.http, httpx.AsyncClient)
        result: dict[str, Any] = (await self.http.get("/_sim/stats")).json()
        return result

    async def records(self, hook: str = "crm") -> dict[str, Any]:
        assert isinstance(self.http, httpx.AsyncClient)
        result: dict[str, dict[str, Any]] = (
            await self.http.get(f"/_sim/hooks/{hook}/records")
        ).json()["records"]
        return result


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[Sender]:
    app = create_app(SimulatorConfig(secret=SECRET), clock=clock, freeze_gc=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
        yield Sender(http)


# -- authentication ------------------------------------------------------------------------


async def test_a_correctly_signed_batch_is_accepted(sim: Sender) -> None:
    response = await sim.send(upserts(["u1", "u2"], email="a@example.com"), batch_id="b-7")

    assert response.status_code == 200
    assert response.json() == {"batch_id": "b-7", "accepted": 2, "rejected": [], "duplicate": False}


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"secret": "wrong-secret"}, "invalid_signature"),
        ({"drop": ("X-Switchyard-Signature",)}, "invalid_signature"),
        ({"drop": ("X-Switchyard-Timestamp",)}, "invalid_signature"),
        # Offsets from the moment of sending, not of collection (tests may run much later).
        ({"timestamp_offset": -400}, "stale_timestamp"),
        ({"timestamp_offset": 400}, "stale_timestamp"),
    ],
)
async def test_unauthenticated_batches_are_refused_and_not_applied(
    sim: Sender, options: dict[str, Any], error: str
) -> None:
    options = dict(options)
    if "timestamp_offset" in options:
        options["timestamp"] = int(time.time()) + options.pop("timestamp_offset")
    response = await sim.send(upserts(["u1"], email="a@example.com"), **options)

    assert response.status_code == 401
    assert response.json() == {"error": error}
    assert await sim.records() == {}


async def test_the_signature_covers_the_timestamp_and_the_exact_body(sim: Sender) -> None:
    request = sim.request(upserts(["u1"], plan="free"))
    signed_ts = request.headers["X-Switchyard-Timestamp"]
    tampered = batch_body(upserts(["u1"], plan="gold"))
    forged = sim.http.build_request("POST", "/hooks/crm", content=tampered, headers=request.headers)
    assert isinstance(sim.http, httpx.AsyncClient)
    assert (await sim.http.send(forged)).json() == {"error": "invalid_signature"}

    request.headers["X-Switchyard-Timestamp"] = str(int(signed_ts) + 1)
    assert (await sim.http.send(request)).json() == {"error": "invalid_signature"}

    within_tolerance = await sim.send(
        upserts(["u1"], plan="free"), timestamp=int(time.time()) - 290
    )
    assert within_tolerance.status_code == 200


def test_the_secret_comes_from_the_environment_with_a_dev_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SWITCHYARD_WEBHOOK_SECRET", raising=False)
    assert SimulatorConfig().secret.get_secret_value() == DEV_WEBHOOK_SECRET
    monkeypatch.setenv("SWITCHYARD_WEBHOOK_SECRET", "from-the-env")
    assert SimulatorConfig().secret.get_secret_value() == "from-the-env"


async def test_the_config_view_never_shows_the_secret(sim: Sender) -> None:
    assert isinstance(sim.http, httpx.AsyncClient)
    response = await sim.http.get("/_sim/config")

    assert SECRET not in response.text
    assert response.json()["max_batch_size"] == 1000
    assert response.json()["max_body_bytes"] == 5 * 1024 * 1024


# -- applying operations -------------------------------------------------------------------


async def test_upserts_merge_fields_and_removes_delete(sim: Sender) -> None:
    first = [
        {"op": "upsert", "key": "u1", "fields": {"email": "a@example.com", "name": "Ada"}},
        {"op": "upsert", "key": "u2", "fields": {"email": "b@example.com"}},
    ]
    second = [
        {"op": "upsert", "key": "u1", "fields": {"name": "Ada L.", "plan": "pro"}},
        {"op": "remove", "key": "u2"},
        {"op": "remove", "key": "never-seen"},
    ]
    assert (await sim.send(first)).json()["accepted"] == 2
    assert (await sim.send(second)).json()["accepted"] == 3

    assert await sim.records() == {
        "u1": {"email": "a@example.com", "name": "Ada L.", "plan": "pro"}
    }
    assert isinstance(sim.http, httpx.AsyncClient)
    keys = (await sim.http.get("/_sim/hooks/crm/records", params={"keys_only": "1"})).json()
    assert keys == {"count": 1, "keys": ["u1"]}
    stats = await sim.stats()
    assert (stats["upserts"], stats["removes"], stats["records_received"]) == (3, 2, 5)
    assert stats["per_hook"]["crm"]["records"] == 1


async def test_bad_items_are_rejected_one_by_one_and_the_rest_applies(sim: Sender) -> None:
    operations: list[Any] = [
        {"op": "upsert", "key": "a", "fields": {"x": 1}},
        {"key": "b", "fields": {"x": 1}},
        {"op": "merge", "key": "c", "fields": {"x": 1}},
        {"op": "upsert", "fields": {"x": 1}},
        {"op": "upsert", "key": "", "fields": {"x": 1}},
        {"op": "remove", "key": 5},
        {"op": "upsert", "key": "d", "fields": ["x", 1]},
        {"op": "upsert", "key": "e"},
        {"op": "upsert", "key": "f", "fields": {"ok": "y", "bio": "x" * 1001}},
        {"op": "upsert", "key": "g", "fields": {"bio": "x" * 1000}},
        "not an object",
        {"op": "remove", "key": "a"},
    ]
    body = (await sim.send(operations)).json()

    assert body["accepted"] == 3
    assert body["rejected"] == [
        {"index": 1, "key": "b", "reason": "unknown_op"},
        {"index": 2, "key": "c", "reason": "unknown_op"},
        {"index": 3, "key": None, "reason": "missing_key"},
        {"index": 4, "key": "", "reason": "missing_key"},
        {"index": 5, "key": None, "reason": "missing_key"},
        {"index": 6, "key": "d", "reason": "invalid_fields"},
        {"index": 7, "key": "e", "reason": "invalid_fields"},
        {"index": 8, "key": "f", "reason": "field_too_long:bio"},
        {"index": 10, "key": None, "reason": "unknown_op"},
    ]
    assert await sim.records() == {"g": {"bio": "x" * 1000}}
    assert (await sim.stats())["rejected"] == 9


operation = st.one_of(
    st.builds(
        lambda key, fields: {"op": "upsert", "key": key, "fields": fields},
        st.sampled_from("abcd"),
        st.dictionaries(st.sampled_from("xyz"), st.integers(0, 3), max_size=3),
    ),
    st.builds(lambda key: {"op": "remove", "key": key}, st.sampled_from("abcd")),
)


@given(st.lists(st.lists(operation, max_size=8), max_size=5))
def test_applying_batches_matches_a_plain_dict_model(batches: list[list[dict[str, Any]]]) -> None:
    records: dict[str, dict[str, Any]] = {}
    model: dict[str, dict[str, Any]] = {}
    for operations in batches:
        for op in operations:
            if op["op"] == "upsert":
                model.setdefault(op["key"], {}).update(op["fields"])
            else:
                model.pop(op["key"], None)
        # The simulator stores the parsed dicts themselves, so give it its own copy.
        upserted, removed, rejected = apply_operations(
            records, orjson.loads(orjson.dumps(operations))
        )
        assert (upserted + removed, rejected) == (len(operations), [])
    assert records == model


# -- idempotency -----------------------------------------------------------------------------


async def test_a_replayed_idempotency_key_answers_the_same_and_applies_nothing(sim: Sender) -> None:
    first = await sim.send(upserts(["u1", "u2"], v=1), idempotency_key="k-1", batch_id="b-1")
    await sim.send(upserts(["u1"], v=2), idempotency_key="k-2", batch_id="b-2")

    replay = await sim.send(upserts(["u1", "u2"], v=1), idempotency_key="k-1", batch_id="b-1")

    assert replay.status_code == 200
    assert replay.json() == {**first.json(), "duplicate": True}
    assert (await sim.records())["u1"] == {"v": 2}
    stats = await sim.stats()
    assert stats["duplicate_batches"] == 1
    assert stats["duplicate_records"] == 2
    assert stats["batches_applied"] == 2
    assert stats["records_received"] == 3
    assert stats["idempotency_mismatches"] == 0


async def test_idempotency_is_per_hook_and_key_reuse_with_another_batch_is_counted(
    sim: Sender,
) -> None:
    await sim.send(upserts(["u1"], v=1), idempotency_key="k-1")
    other_hook = await sim.send(upserts(["u1"], v=1), idempotency_key="k-1", hook="ads")
    reused = await sim.send(upserts(["u9"], v=9), idempotency_key="k-1", batch_id="b-other")

    assert other_hook.json()["duplicate"] is False
    assert reused.json()["duplicate"] is True
    assert "u9" not in await sim.records()
    assert (await sim.stats())["idempotency_mismatches"] == 1


async def test_a_batch_without_idempotency_key_is_refused(sim: Sender) -> None:
    response = await sim.send(upserts(["u1"], v=1), drop=("Idempotency-Key",))

    assert response.status_code == 400
    assert response.json() == {"error": "missing_idempotency_key"}


# -- malformed and oversized batches --------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        orjson.dumps({"sync": "s", "contract_version": 1, "operations": []}),
        orjson.dumps({"batch_id": "b", "sync": "s", "contract_version": "1", "operations": []}),
        orjson.dumps({"batch_id": "b", "sync": "s", "contract_version": 1, "operations": {}}),
    ],
)
async def test_malformed_bodies_get_400(sim: Sender, body: bytes) -> None:
    response = await sim.send([], body=body)

    assert response.status_code == 400
    assert response.json()["error"] == "malformed_body"
    assert response.json()["detail"]


async def test_batches_over_the_size_limit_are_refused_whole(sim: Sender) -> None:
    exactly = await sim.send(upserts([f"u{i}" for i in range(1000)], v=1))
    over = await sim.send(upserts([f"u{i}" for i in range(1001)], v=2))

    assert exactly.json()["accepted"] == 1000
    assert over.status_code == 400
    assert over.json() == {"error": "batch_too_large", "limit": 1000}
    assert (await sim.records())["u0"] == {"v": 1}


async def test_bodies_over_the_byte_limit_get_413_even_when_streamed(sim: Sender) -> None:
    await sim.configure(max_body_bytes=2_000)
    big = upserts([f"u{i}" for i in range(100)], email="someone@example.com")

    declared = await sim.send(big)
    request = sim.request(big)
    body = request.read()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 500):
            yield body[start : start + 500]

    assert isinstance(sim.http, httpx.AsyncClient)
    streamed_headers = {k: v for k, v in request.headers.items() if k != "content-length"}
    streamed = await sim.http.post("/hooks/crm", content=chunks(), headers=streamed_headers)

    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json() == {"error": "payload_too_large", "limit_bytes": 2_000}
    assert await sim.records() == {}


# -- rate limiting and injected faults --------------------------------------------------------


async def test_rate_limit_answers_429_with_retry_after_and_counts_early_retries(
    sim: Sender, clock: FakeClock
) -> None:
    await sim.configure(rate_limit={"requests": 2, "per_seconds": 10})

    ok_1 = await sim.send(upserts(["u1"], v=1))
    ok_2 = await sim.send(upserts(["u2"], v=1))
    limited = await sim.send(upserts(["u3"], v=1))
    clock.advance(1)
    too_early = await sim.send(upserts(["u3"], v=1))
    clock.advance(4)
    on_time = await sim.send(upserts(["u3"], v=1))

    rate_headers = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
    assert [ok_1.headers[h] for h in rate_headers] == ["2", "1", "0"]
    assert [ok_2.headers[h] for h in rate_headers] == ["2", "0", "5"]
    assert limited.status_code == 429
    assert limited.json() == {"error": "rate_limited"}
    assert limited.headers["Retry-After"] == "5"
    assert [limited.headers[h] for h in rate_headers] == ["2", "0", "5"]
    assert too_early.status_code == 429
    assert on_time.status_code == 200
    stats = await sim.stats()
    assert stats["early_retries"] == 1
    assert stats["status_counts"] == {"200": 3, "429": 2}
    assert sorted(await sim.records()) == ["u1", "u2", "u3"]

    await sim.configure(rate_limit=None)
    assert "X-RateLimit-Limit" not in (await sim.send(upserts(["u4"], v=1))).headers


async def test_forced_statuses_are_served_in_order(sim: Sender, clock: FakeClock) -> None:
    config = await sim.configure(force_status=[429, 500, 200, 503])
    assert config["force_status"] == [429, 500, 200, 503]

    statuses = []
    for i in range(5):
        response = await sim.send(upserts([f"u{i}"], v=1))
        statuses.append(response.status_code)
        if i == 0:
            assert response.headers["Retry-After"] == "2"
            assert response.json() == {"error": "rate_limited"}
        clock.advance(1)

    assert statuses == [429, 500, 200, 503, 200]
    assert sorted(await sim.records()) == ["u2", "u4"]
    # The second request came 1 s later, inside the 2 s Retry-After the forced 429 announced.
    assert (await sim.stats())["early_retries"] == 1
    assert isinstance(sim.http, httpx.AsyncClient)
    assert (await sim.http.get("/_sim/config")).json()["force_status"] == []


async def test_an_outage_answers_503_with_retry_after_but_health_stays_up(sim: Sender) -> None:
    await sim.configure(outage=True)
    down = await sim.send(upserts(["u1"], v=1))
    assert isinstance(sim.http, httpx.AsyncClient)
    health = await sim.http.get("/healthz")
    await sim.configure(outage=False)
    up = await sim.send(upserts(["u1"], v=1))

    assert (down.status_code, down.headers["Retry-After"]) == (503, "1")
    assert health.json() == {"ok": True}
    assert up.status_code == 200


async def test_random_errors_follow_the_seed_and_apply_nothing(clock: FakeClock) -> None:
    async def statuses() -> list[int]:
        config = SimulatorConfig(secret=SECRET, error_rate=0.5, seed=7)
        app = create_app(config, clock=clock, freeze_gc=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
            sender = Sender(http)
            codes = [(await sender.send(upserts([f"u{i}"], v=1))).status_code for i in range(30)]
            assert len(await sender.records()) == codes.count(200)
            return codes

    first, second = await statuses(), await statuses()

    assert first == second
    assert set(first) <= {200, 500, 502, 503}
    assert 200 in first and len(set(first)) > 1


async def test_timeouts_and_latency_delay_the_answer(sim: Sender) -> None:
    await sim.configure(timeout_rate=1.0, timeout_seconds=0.02)
    started = time.monotonic()
    timed_out = await sim.send(upserts(["u1"], v=1))
    assert time.monotonic() - started >= 0.02
    assert timed_out.status_code == 504
    assert await sim.records() == {}

    await sim.configure(timeout_rate=0.0, latency_ms=30)
    started = time.monotonic()
    slow = await sim.send(upserts(["u1"], v=1))
    assert time.monotonic() - started >= 0.03
    assert slow.status_code == 200


async def test_reject_rate_picks_the_same_keys_every_time(sim: Sender) -> None:
    keys = [f"user-{i}" for i in range(1000)]
    await sim.configure(reject_rate=0.3, seed=11)

    def rejected_keys(response: httpx.Response) -> set[str]:
        items = response.json()["rejected"]
        assert {item["reason"] for item in items} <= {"rejected_by_rule"}
        return {item["key"] for item in items}

    first = rejected_keys(await sim.send(upserts(keys, v=1)))
    again = rejected_keys(await sim.send(upserts(keys, v=2)))
    await sim.configure(reject_rate=0.5)
    more = rejected_keys(await sim.send(upserts(keys, v=3)))

    assert 250 <= len(first) <= 350
    assert again == first
    assert first < more
    # Keys refused at 0.3 were never stored; the others keep their latest accepted values.
    assert len(await sim.records()) == 1000 - len(first)


async def test_reject_keys_always_fail_with_the_configured_reason(sim: Sender) -> None:
    await sim.configure(reject_keys=["vip"], reject_reason="blocked_by_customer")
    operations = [*upserts(["vip", "other"], v=1), {"op": "remove", "key": "vip"}]

    body = (await sim.send(operations)).json()

    assert body["accepted"] == 1
    assert body["rejected"] == [
        {"index": 0, "key": "vip", "reason": "blocked_by_customer"},
        {"index": 2, "key": "vip", "reason": "blocked_by_customer"},
    ]


@given(st.text(max_size=20), st.floats(0, 1), st.floats(0, 1), st.integers(0, 3))
def test_raising_the_reject_rate_only_adds_keys(key: str, a: float, b: float, seed: int) -> None:
    low, high = sorted((a, b))
    if key_rejected(key, low, seed):
        assert key_rejected(key, high, seed)


# -- control API -----------------------------------------------------------------------------


async def test_invalid_config_is_refused_and_leaves_the_config_alone(sim: Sender) -> None:
    assert isinstance(sim.http, httpx.AsyncClient)
    out_of_range = await sim.http.put("/_sim/config", json={"error_rate": 2})
    unknown = await sim.http.put("/_sim/config", json={"eror_rate": 0.1})
    not_json = await sim.http.put("/_sim/config", content=b"{")

    assert (out_of_range.status_code, unknown.status_code, not_json.status_code) == (422, 422, 400)
    assert (await sim.http.get("/_sim/config")).json()["error_rate"] == 0.0


async def test_the_log_lists_every_post_with_its_outcome(sim: Sender) -> None:
    await sim.send(upserts(["u1"], v=1), idempotency_key="k-1", batch_id="b-1")
    await sim.send(upserts(["u1"], v=1), idempotency_key="k-2", secret="wrong")
    await sim.send(upserts(["u1"], v=1), idempotency_key="k-1", batch_id="b-1")

    assert isinstance(sim.http, httpx.AsyncClient)
    log = (await sim.http.get("/_sim/hooks/crm/log")).json()

    summary = [(e["batch_id"], e["idempotency_key"], e["operations"], e["status"]) for e in log]
    assert summary == [("b-1", "k-1", 1, 200), (None, "k-2", None, 401), ("b-1", "k-1", 1, 200)]
    assert all(abs(e["received_at"] - time.time()) < 60 for e in log)
    assert (await sim.http.get("/_sim/hooks/nobody/log")).json() == []


async def test_stats_add_up_over_hooks(sim: Sender) -> None:
    await sim.send(upserts(["u1", "u2"], v=1), hook="crm")
    await sim.send(upserts(["u1"], v=1), hook="ads")
    await sim.send(upserts(["u1"], v=1), hook="ads", secret="wrong")

    stats = await sim.stats()

    assert stats["requests"] == 3
    assert stats["records_received"] == 3
    assert stats["status_counts"] == {"200": 2, "401": 1}
    assert stats["per_hook"]["ads"]["status_counts"] == {"200": 1, "401": 1}
    assert stats["per_hook"]["crm"]["records_received"] == 2


async def test_reset_forgets_records_stats_replies_and_config(sim: Sender) -> None:
    await sim.send(upserts(["u1"], v=1), idempotency_key="k-1")
    await sim.configure(outage=True, force_status=[500])
    assert isinstance(sim.http, httpx.AsyncClient)

    assert (await sim.http.post("/_sim/reset")).json() == {"ok": True}

    config = (await sim.http.get("/_sim/config")).json()
    assert (config["outage"], config["force_status"]) == (False, [])
    assert await sim.records() == {}
    assert (await sim.stats())["requests"] == 0
    again = await sim.send(upserts(["u1"], v=1), idempotency_key="k-1")
    assert again.json()["duplicate"] is False


async def test_unknown_paths_and_methods_answer_json_errors(sim: Sender) -> None:
    assert isinstance(sim.http, httpx.AsyncClient)
    missing = await sim.http.get("/nowhere")
    wrong_method = await sim.http.get("/hooks/crm")

    assert (missing.status_code, missing.json()) == (404, {"error": "not_found"})
    assert wrong_method.status_code == 405


# -- as a real server -----------------------------------------------------------------------


@pytest.fixture
def served() -> Iterator[str]:
    app = create_app(SimulatorConfig(secret=SECRET), freeze_gc=False)
    with run_in_thread(app) as base_url:
        yield base_url


def test_a_uvicorn_server_in_a_thread_serves_batches_over_keep_alive(served: str) -> None:
    with httpx.Client(base_url=served) as http:
        sender = Sender(http)
        for i in range(3):
            response = http.send(sender.request(upserts([f"u{i}"], v=i)))
            assert response.json()["accepted"] == 1
        stats = http.get("/_sim/stats").json()

    assert stats["batches_applied"] == 3


def test_a_client_that_gives_up_on_a_simulated_timeout_is_let_go() -> None:
    config = SimulatorConfig(secret=SECRET, timeout_rate=1.0, timeout_seconds=30)
    with run_in_thread(create_app(config, freeze_gc=False)) as base_url:
        with httpx.Client(base_url=base_url, timeout=0.2) as http, pytest.raises(httpx.ReadTimeout):
            http.send(Sender(http).request(upserts(["u1"], v=1)))
        stopping = time.monotonic()

    # Shutdown would otherwise wait out its 1 s grace period for the parked request.
    assert time.monotonic() - stopping < 0.9


def test_the_module_runs_as_its_own_process(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO), "SWITCHYARD_WEBHOOK_SECRET": "process-secret"}
    command = [
        sys.executable,
        "-m",
        "switchyard.destinations.webhook.simulator",
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            deadline = time.monotonic() + 10
            while True:
                try:
                    http.get("/healthz")
                    break
                except httpx.TransportError:
                    assert process.poll() is None, process.stderr
                    assert time.monotonic() < deadline, "simulator did not come up"
                    time.sleep(0.05)
            request = Sender(http).request(upserts(["u1"], v=1), secret="process-secret")
            assert http.send(request).json()["accepted"] == 1
    finally:
        process.terminate()
        process.wait(timeout=10)
        assert process.stderr is not None
        process.stderr.close()
