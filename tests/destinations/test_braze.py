"""The Braze client against the Braze simulator, and the simulator on its own.

Mostly in-process (`httpx.ASGITransport`); the registry path (example config, client
factory, simulator app) once over real HTTP. What lands is read back through the
simulator's control API; exact request bodies through `httpx.MockTransport`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
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
from switchyard.destinations import registry
from switchyard.destinations.braze.client import (
    DEV_API_KEY,
    BrazeClient,
    rate_limit_window,
    resolve_api_key,
)
from switchyard.destinations.braze.simulator import MISSING_IDENTIFIER, NO_DATA, create_app
from switchyard.destinations.braze.spec import SPEC, BrazeConfig
from switchyard.errors import (
    DestinationConfigError,
    DestinationRefusedError,
    DestinationUnavailableError,
    FatalError,
    RateLimitedError,
    RetryableError,
)
from switchyard.simulators.server import run_in_thread
from tests.destinations.support import (
    RecordingLimiter,
    SimControl,
    batch,
    connector,
    remove,
    upsert,
)

API_KEY = "braze-rest-key-7c1d"
KEY_ENV = "GROWTH_BRAZE_KEY"
ENV = {KEY_ENV: API_KEY}
SIM_URL = "http://sim"

FIELDS = [
    FieldMapping(name="first_name", source="first_name"),
    FieldMapping(name="plan", source="plan"),
    FieldMapping(name="lifetime_value", source="lifetime_value", type=TraitType.NUMBER),
    # Not nulled when a person leaves: other campaigns still mail them.
    FieldMapping(name="email", source="email", type=TraitType.EMAIL, send_nulls=False),
    FieldMapping(name="crm_score", source="crm_score", owner=FieldOwner.DESTINATION),
]


def destination(
    identifier: str = "external_id",
    fields: list[FieldMapping] | None = None,
    base_url: str = SIM_URL,
    **config: Any,
) -> Destination:
    kind = {"email": TraitType.EMAIL, "phone": TraitType.PHONE}.get(identifier, TraitType.STRING)
    contract = Contract(
        version=1,
        identifier=Identifier(name=identifier, source="profile_id", type=kind),
        fields=FIELDS if fields is None else fields,
        batch_size=75,
    )
    return Destination(
        name="braze_users",
        owner="growth",
        config=BrazeConfig(base_url=base_url, api_key_env=KEY_ENV, **config),
        contract=contract,
    )


class Simulator(SimControl):
    def __init__(self, app: Any) -> None:
        super().__init__(app, SIM_URL, headers={"Authorization": f"Bearer {API_KEY}"})

    async def track(self, **body: Any) -> httpx.Response:
        return await self.control.post("/users/track", json=body)


Connect = Callable[..., BrazeClient]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(create_app(api_key=API_KEY))
    yield simulator
    await simulator.aclose()


@pytest.fixture
async def connect(sim: Simulator) -> AsyncIterator[Connect]:
    async with connector(
        BrazeClient,
        "test_sync",
        default_destination=destination,
        default_env=ENV,
        default_transport=sim.transport,
        default_limiter=lambda: RecordingLimiter(waits=False),
    ) as make:
        yield make


def capture(
    requests: list[httpx.Request], status: int = 201, body: Any = None
) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(status, json=body or {"message": "success"})

    return httpx.MockTransport(handle)


# -- what is sent ------------------------------------------------------------------------------


async def test_upserts_and_removes_are_attributes_objects(connect: Connect) -> None:
    requests: list[httpx.Request] = []
    client = connect(transport=capture(requests))

    await client.send(batch(upsert("u1", first_name="Ada", plan="pro"), remove("u2")), "k")

    (request,) = requests
    assert (request.method, request.url.path) == ("POST", "/users/track")
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert orjson.loads(request.content) == {
        "attributes": [
            {"external_id": "u1", "first_name": "Ada", "plan": "pro"},
            # Only the synced fields that may be nulled; never creates a profile.
            {
                "external_id": "u2",
                "first_name": None,
                "plan": None,
                "lifetime_value": None,
                "_update_existing_only": True,
            },
        ]
    }


async def test_alias_identified_upserts_name_the_label_and_may_create(connect: Connect) -> None:
    requests: list[httpx.Request] = []
    client = connect(destination("user_alias", alias_label="crm_id"), transport=capture(requests))

    await client.send(batch(upsert("c-17", plan="pro")), "k")

    assert orjson.loads(requests[0].content)["attributes"] == [
        {
            "user_alias": {"alias_name": "c-17", "alias_label": "crm_id"},
            "_update_existing_only": False,
            "plan": "pro",
        }
    ]


# -- round trips -------------------------------------------------------------------------------


async def test_a_batch_lands_and_resending_it_changes_nothing(
    sim: Simulator, connect: Connect
) -> None:
    client = connect()
    rows = batch(
        upsert("u1", first_name="Ada", plan="pro", email="ada@example.com"),
        upsert("u2", first_name="Bob", plan="free"),
        upsert("u3", lifetime_value=912.5),
    )

    outcome = await client.send(rows, "k0")
    before = await sim.records()
    await client.send(rows, "k0")

    assert (outcome.accepted, list(outcome.rejections)) == (3, [])
    assert {key: {k: v for k, v in r.items() if k != "braze_id"} for key, r in before.items()} == {
        "u1": {"external_id": "u1", "first_name": "Ada", "plan": "pro", "email": "ada@example.com"},
        "u2": {"external_id": "u2", "first_name": "Bob", "plan": "free"},
        "u3": {"external_id": "u3", "lifetime_value": 912.5},
    }
    assert await sim.records() == before


async def test_a_remove_unsets_the_synced_attributes_and_keeps_the_profile(
    sim: Simulator, connect: Connect
) -> None:
    client = connect()
    await client.send(batch(upsert("u1", first_name="Ada", plan="pro", email="a@x.io")), "k0")
    # Written by another tool: not ours to clear.
    await sim.track(attributes=[{"external_id": "u1", "favourite_colour": "teal"}])
    braze_id = (await sim.records())["u1"]["braze_id"]

    outcome = await client.send(batch(remove("u1"), remove("never-synced")), "k1")

    assert outcome.accepted == 2
    assert await sim.records() == {
        "u1": {
            "braze_id": braze_id,
            "external_id": "u1",
            "email": "a@x.io",
            "favourite_colour": "teal",
        }
    }


async def test_a_remove_with_nothing_to_unset_sends_nothing(
    sim: Simulator, connect: Connect
) -> None:
    kept = [FieldMapping(name="email", source="email", send_nulls=False)]
    client = connect(destination(fields=kept))

    outcome = await client.send(batch(remove("u1")), "k")

    assert outcome.accepted == 1
    assert (await sim.stats())["requests"] == 0


async def test_the_registry_path_over_http_with_the_example_config() -> None:
    with run_in_thread(registry.simulator_app("braze")) as base_url:
        dest = destination().model_copy(update={"config": SPEC.example_config(base_url)})
        client = registry.create_client(
            dest, "test_sync", RecordingLimiter(waits=False), "development", {}
        )
        try:
            await client.preflight()
            outcome = await client.send(batch(upsert("u1", plan="pro")), "k")
            httpx.put(f"{base_url}/_sim/config", json={"force_status": [429, 429]})
            with pytest.raises(RateLimitedError) as raised:
                await client.send(batch(upsert("u2", plan="pro")), "k2")
        finally:
            await client.aclose()
        records = httpx.get(f"{base_url}/_sim/records").json()

    assert outcome.accepted == 1
    assert records["count"] == 1
    assert records["records"]["u1"]["plan"] == "pro"
    assert raised.value.retry_after == 2  # FaultConfig.force_retry_after's default


async def test_the_simulator_works_mounted_under_a_prefix() -> None:
    hub = Starlette(routes=[Mount("/braze", app=create_app())])
    limiter = RecordingLimiter(waits=False)
    client = BrazeClient(
        destination(base_url="http://hub/braze"),
        "test_sync",
        limiter,
        env={},
        transport=httpx.ASGITransport(app=hub),
    )
    try:
        outcome = await client.send(batch(upsert("u1", plan="pro")), "k")
    finally:
        await client.aclose()

    assert outcome.accepted == 1
    assert limiter.observed and limiter.observed[0][0] is not None


# -- per-row rejections -----------------------------------------------------------------------


async def test_rejected_rows_come_back_with_brazes_reason(sim: Simulator, connect: Connect) -> None:
    await sim.configure(reject_keys=["u2"])

    outcome = await connect().send(
        batch(upsert("u1", plan="a"), upsert("u2", plan="b"), upsert("u3", plan="c")), "k"
    )

    assert outcome.accepted == 2
    assert [key for key, _ in outcome.rejections] == ["u2"]
    assert "external_id" in outcome.rejections[0][1]
    assert sorted(await sim.records()) == ["u1", "u3"]


async def test_error_indexes_are_read_per_request_when_a_batch_is_split(
    sim: Simulator, connect: Connect
) -> None:
    keys = [f"u{i:03}" for i in range(80)]
    await sim.configure(reject_keys=["u001", "u077"])

    outcome = await connect().send(batch(*(upsert(k, plan="p") for k in keys)), "k")

    assert outcome.accepted == 78
    assert [key for key, _ in outcome.rejections] == ["u001", "u077"]


async def test_errors_for_one_object_are_joined_and_stray_errors_ignored(connect: Connect) -> None:
    errors = [
        {"type": "first", "input_array": "attributes", "index": 1},
        {"type": "second", "input_array": "attributes", "index": 1},
        {"type": "an event", "input_array": "events", "index": 0},
        {"type": "out of range", "input_array": "attributes", "index": 9},
    ]
    body = {"message": "success", "attributes_processed": 1, "errors": errors}
    client = connect(transport=capture([], body=body))

    outcome = await client.send(batch(upsert("u1"), upsert("u2")), "k")

    assert (outcome.accepted, list(outcome.rejections)) == (1, [("u2", "first; second")])


async def test_the_simulator_reports_an_object_without_identifier(sim: Simulator) -> None:
    response = await sim.track(attributes=[{"external_id": "u1", "plan": "a"}, {"plan": "b"}])

    assert response.status_code == 201
    assert response.json() == {
        "message": "success",
        "attributes_processed": 1,
        "errors": [{"type": MISSING_IDENTIFIER, "input_array": "attributes", "index": 1}],
    }
    assert list(await sim.records()) == ["u1"]


# -- limits ------------------------------------------------------------------------------------


async def test_batches_are_split_at_75_objects(sim: Simulator, connect: Connect) -> None:
    outcome = await connect().send(batch(*(upsert(f"u{i}", plan="p") for i in range(160))), "k")
    stats = await sim.stats()

    assert outcome.accepted == 160
    assert (stats["requests"], stats["max_batch_records"]) == (3, 75)
    assert len(await sim.records()) == 160


async def test_bodies_are_split_by_bytes_and_an_oversized_row_is_rejected_alone(
    sim: Simulator, connect: Connect
) -> None:
    client = connect(max_payload_bytes=600)
    rows = [upsert(f"u{i}", first_name="x" * 150) for i in range(6)]
    rows.append(upsert("huge", first_name="y" * 700))

    outcome = await client.send(batch(*rows), "k")
    stats = await sim.stats()

    assert outcome.accepted == 6
    assert [key for key, _ in outcome.rejections] == ["huge"]
    assert "600 bytes" in outcome.rejections[0][1]
    assert stats["max_body_bytes"] <= 600
    assert stats["requests"] == 2
    assert len(await sim.records()) == 6


async def test_the_simulator_refuses_too_many_objects_and_empty_requests(sim: Simulator) -> None:
    over = await sim.track(
        attributes=[{"external_id": f"u{i}"} for i in range(70)],
        events=[{"external_id": "u1", "name": "e", "time": "2024-01-01T00:00:00Z"}] * 6,
    )
    empty = await sim.track(attributes=[])

    assert over.status_code == 400
    assert "76" in over.json()["message"]
    assert (empty.status_code, empty.json()) == (400, {"message": NO_DATA})
    assert await sim.records() == {}


async def test_the_simulator_treats_track_as_a_partial_update_where_null_unsets(
    sim: Simulator,
) -> None:
    await sim.track(attributes=[{"external_id": "u1", "a": 1, "b": "x", "c": True}])
    await sim.track(attributes=[{"external_id": "u1", "a": None, "c": False}])

    record = (await sim.records())["u1"]
    assert {k: record.get(k) for k in ("a", "b", "c")} == {"a": None, "b": "x", "c": False}
    assert "a" not in record


async def test_the_simulator_wants_a_bearer_key(sim: Simulator) -> None:
    anonymous = await sim.control.post(
        "/users/track", json={"attributes": [{"external_id": "u1"}]}, headers={"Authorization": ""}
    )

    assert anonymous.status_code == 401
    assert await sim.records() == {}


# -- errors ------------------------------------------------------------------------------------


async def test_a_forced_429_raises_with_retry_after_and_holds_the_limiter(
    sim: Simulator, connect: Connect
) -> None:
    await sim.configure(force_status=[429], force_retry_after=1)
    limiter = RecordingLimiter(waits=False)

    with pytest.raises(RateLimitedError) as raised:
        await connect(limiter=limiter).send(batch(upsert("u1")), "k")

    assert raised.value.retry_after == 1.0
    assert limiter.holds == [1.0]
    remaining, resets_in = limiter.observed[-1]
    assert remaining == 0 and resets_in is not None and 0 < resets_in <= 2
    assert await sim.records() == {}


async def test_the_rate_limit_headers_feed_the_limiter_and_time_a_429_without_retry_after(
    sim: Simulator, connect: Connect
) -> None:
    await sim.configure(rate_limit={"requests": 1, "per_seconds": 2})
    limiter = RecordingLimiter(waits=False)
    client = connect(limiter=limiter)

    await client.send(batch(upsert("u1")), "k0")
    with pytest.raises(RateLimitedError) as raised:
        await client.send(batch(upsert("u2")), "k1")

    # The spent window was announced by the first answer, before any 429.
    remaining, resets_in = limiter.observed[0]
    assert remaining == 0 and resets_in is not None and 1 <= resets_in <= 3
    assert raised.value.retry_after is not None and 1 <= raised.value.retry_after <= 3
    assert limiter.holds == [raised.value.retry_after]
    assert limiter.acquired == 2


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retryable(sim: Simulator, connect: Connect, status: int) -> None:
    await sim.configure(force_status=[status])

    with pytest.raises(DestinationUnavailableError) as raised:
        await connect().send(batch(upsert("u1")), "k")

    assert isinstance(raised.value, RetryableError)


async def test_an_outage_is_retryable_with_its_retry_after(
    sim: Simulator, connect: Connect
) -> None:
    await sim.configure(outage=True)

    with pytest.raises(DestinationUnavailableError) as raised:
        await connect().send(batch(upsert("u1")), "k")

    assert raised.value.retry_after == 1.0


async def test_a_wrong_key_is_fatal(sim: Simulator, connect: Connect) -> None:
    with pytest.raises(DestinationRefusedError) as raised:
        await connect(env={KEY_ENV: "not-the-key"}).send(batch(upsert("u1")), "k")

    assert raised.value.status == 401
    assert isinstance(raised.value, FatalError)
    assert KEY_ENV in str(raised.value)


@pytest.mark.parametrize("status", [400, 403, 413])
async def test_whole_request_refusals_are_fatal(
    sim: Simulator, connect: Connect, status: int
) -> None:
    await sim.configure(force_status=[status])

    with pytest.raises(DestinationRefusedError) as raised:
        await connect().send(batch(upsert("u1")), "k")

    assert raised.value.status == status


async def test_a_success_that_is_not_json_is_retryable(connect: Connect) -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(201, text="<html>proxy</html>"))

    with pytest.raises(DestinationUnavailableError):
        await connect(transport=transport).send(batch(upsert("u1")), "k")


async def test_preflight_checks_the_key(sim: Simulator, connect: Connect) -> None:
    await connect().preflight()

    with pytest.raises(DestinationRefusedError):
        await connect(env={KEY_ENV: "wrong"}).preflight()
    assert await sim.records() == {}


def test_rate_limit_window_reads_brazes_headers() -> None:
    now = 1_700_000_000.0
    headers = httpx.Headers({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1700000003"})

    assert rate_limit_window(headers, now) == (0, 3.0)
    assert rate_limit_window(httpx.Headers({"X-RateLimit-Reset": "1600000000"}), now) == (
        None,
        0.0,
    )
    # A reset an hour away is clock skew: waiting stays bounded.
    assert rate_limit_window(httpx.Headers({"X-RateLimit-Reset": str(now + 3600)}), now)[1] == 60
    assert rate_limit_window(httpx.Headers({"X-RateLimit-Remaining": "n/a"}), now) == (None, None)


# -- delete and merge --------------------------------------------------------------------------


async def test_delete_users_goes_50_at_a_time_on_its_own_allowance(
    sim: Simulator, connect: Connect
) -> None:
    limiter, admin = RecordingLimiter(waits=False), RecordingLimiter(waits=False)
    client = connect(limiter=limiter, admin_limiter=admin)
    keys = [f"u{i:03}" for i in range(120)]
    await client.send(batch(*(upsert(k, plan="p") for k in keys[:75])), "k0")
    await client.send(batch(*(upsert(k, plan="p") for k in keys[75:])), "k1")
    await client.send(batch(upsert("stays", plan="p")), "k2")
    requests_before = (await sim.stats())["requests"]

    deleted = await client.delete_users([*keys, "unknown"])

    assert deleted == 120
    assert list(await sim.records()) == ["stays"]
    assert (await sim.stats())["requests"] - requests_before == 3
    assert (limiter.acquired, admin.acquired) == (3, 3)
    assert len(admin.observed) == 3


async def test_merge_users_keeps_the_targets_values_and_adds_the_rest(
    sim: Simulator, connect: Connect
) -> None:
    client = connect()
    await client.send(
        batch(
            upsert("keep", first_name="Ada", plan="gold"),
            upsert("dupe", first_name="Adeline", lifetime_value=40.0),
        ),
        "k",
    )
    braze_id = (await sim.records())["keep"]["braze_id"]

    merged = await client.merge_users([("dupe", "keep")])

    assert merged == 1
    assert await sim.records() == {
        "keep": {
            "braze_id": braze_id,
            "external_id": "keep",
            "first_name": "Ada",
            "plan": "gold",
            "lifetime_value": 40.0,
        }
    }
    assert (await sim.stats())["status_counts"]["202"] == 1


async def test_merge_users_sends_at_most_50_updates_per_request(connect: Connect) -> None:
    requests: list[httpx.Request] = []
    client = connect(transport=capture(requests, status=202))

    await client.merge_users([(f"m{i}", f"k{i}") for i in range(60)])

    bodies = [orjson.loads(r.content) for r in requests]
    assert [r.url.path for r in requests] == ["/users/merge", "/users/merge"]
    assert [len(b["merge_updates"]) for b in bodies] == [50, 10]
    assert bodies[0]["merge_updates"][0] == {
        "identifier_to_merge": {"external_id": "m0"},
        "identifier_to_keep": {"external_id": "k0"},
    }


async def test_email_identified_profiles_upsert_merge_and_delete(
    sim: Simulator, connect: Connect
) -> None:
    client = connect(destination("email", fields=[FieldMapping(name="plan", source="plan")]))
    await client.send(
        batch(upsert("a@example.com", plan="pro"), upsert("b@example.com", plan="free")), "k"
    )
    assert sorted(await sim.records()) == ["a@example.com", "b@example.com"]

    await client.merge_users([("b@example.com", "a@example.com")])
    after_merge = await sim.records()
    deleted = await client.delete_users(["a@example.com"])

    assert list(after_merge) == ["a@example.com"]
    assert after_merge["a@example.com"]["plan"] == "pro"
    assert deleted == 1
    assert await sim.records() == {}


async def test_email_deletes_and_merges_carry_the_prioritization(connect: Connect) -> None:
    requests: list[httpx.Request] = []
    dest = destination("email", fields=[], prioritization=("unidentified",))
    client = connect(dest, transport=capture(requests, body={"deleted": 1, "message": "success"}))

    await client.delete_users(["a@example.com"])
    await client.merge_users([("b@example.com", "a@example.com")])

    delete, merge = (orjson.loads(r.content) for r in requests)
    assert delete == {
        "email_addresses": [{"email": "a@example.com", "prioritization": ["unidentified"]}]
    }
    assert merge["merge_updates"][0]["identifier_to_keep"] == {
        "email": "a@example.com",
        "prioritization": ["unidentified"],
    }


async def test_alias_identified_profiles_round_trip(sim: Simulator, connect: Connect) -> None:
    client = connect(destination("user_alias", alias_label="crm_id"))

    await client.send(batch(upsert("c-1", plan="pro", first_name="Ada")), "k0")
    created = (await sim.records())["c-1"]
    await client.send(batch(remove("c-1")), "k1")
    removed = (await sim.records())["c-1"]
    deleted = await client.delete_users(["c-1"])

    assert created["user_aliases"] == [{"alias_name": "c-1", "alias_label": "crm_id"}]
    assert (created["plan"], "plan" in removed, "first_name" in removed) == ("pro", False, False)
    assert deleted == 1
    assert await sim.records() == {}


async def test_the_simulator_holds_delete_and_merge_to_their_limits(sim: Simulator) -> None:
    too_many = await sim.control.post(
        "/users/delete", json={"external_ids": [f"u{i}" for i in range(51)]}
    )
    two_kinds = await sim.control.post(
        "/users/delete", json={"external_ids": ["a"], "braze_ids": ["b"]}
    )
    merges = [
        {
            "identifier_to_merge": {"external_id": f"m{i}"},
            "identifier_to_keep": {"external_id": "k"},
        }
        for i in range(51)
    ]
    too_many_merges = await sim.control.post("/users/merge", json={"merge_updates": merges})
    unprioritised = await sim.control.post(
        "/users/merge",
        json={
            "merge_updates": [
                {
                    "identifier_to_merge": {"email": "a@x.io"},
                    "identifier_to_keep": {"email": "b@x.io"},
                }
            ]
        },
    )

    assert [r.status_code for r in (too_many, two_kinds, too_many_merges, unprioritised)] == [
        400,
        400,
        400,
        400,
    ]
    assert "prioritization" in unprioritised.json()["message"]


# -- configuration -----------------------------------------------------------------------------


def test_the_api_key_comes_from_the_named_variable() -> None:
    config = BrazeConfig(api_key_env=KEY_ENV)

    assert resolve_api_key(config, "production", ENV) == API_KEY
    assert resolve_api_key(config, "development", {}) == DEV_API_KEY
    with pytest.raises(DestinationConfigError, match=KEY_ENV):
        resolve_api_key(config, "production", {})
    with pytest.raises(DestinationConfigError, match="placeholder"):
        resolve_api_key(config, "production", {KEY_ENV: DEV_API_KEY})


def test_contracts_braze_cannot_honour_are_refused(connect: Connect) -> None:
    with pytest.raises(ValidationError, match="braze_id"):
        destination("braze_id")
    with pytest.raises(DestinationConfigError, match="alias_label"):
        connect(destination("user_alias"))
    with pytest.raises(DestinationConfigError, match="reserved"):
        connect(destination(fields=[FieldMapping(name="braze_id", source="bid")]))
    with pytest.raises(ValidationError, match="if_empty"):
        destination(fields=[FieldMapping(name="plan", source="plan", write="if_empty")])
    with pytest.raises(ValidationError):
        BrazeConfig(prioritization=("identified", "unidentified"))


def test_the_spec_states_brazes_documented_limits() -> None:
    assert registry.spec_for("braze") is SPEC
    assert (SPEC.max_batch_size, SPEC.max_payload_bytes, SPEC.max_field_chars) == (
        75,
        4_000_000,
        255,
    )
    assert SPEC.rate_limit is not None
    assert (SPEC.rate_limit.requests, SPEC.rate_limit.per_seconds) == (3_000, 3)
