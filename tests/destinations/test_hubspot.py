"""The HubSpot client against the HubSpot simulator, and HubSpot's own SDK against the same.

Mostly in-process (`httpx.ASGITransport`), over real HTTP where the SDK or the registry's
example config needs a port. What landed is read back through the simulator's control API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from switchyard.catalog.models import (
    Contract,
    Destination,
    FieldMapping,
    Identifier,
    SyncMode,
    TraitType,
    WriteRule,
)
from switchyard.delivery.ratelimit import RateLimiter
from switchyard.destinations import registry
from switchyard.destinations.hubspot.client import (
    HubSpotClient,
    property_text,
    request_slices,
    resolve_token,
)
from switchyard.destinations.hubspot.simulator import create_app
from switchyard.destinations.hubspot.spec import DEV_HUBSPOT_TOKEN, SPEC, HubSpotConfig
from switchyard.destinations.spec import Capability
from switchyard.errors import (
    DestinationConfigError,
    DestinationRefusedError,
    DestinationUnavailableError,
    RateLimitedError,
)
from switchyard.simulators.server import run_in_thread
from tests.destinations.support import SimControl, batch, connector, remove, upsert

SIM_URL = "http://hubspot.test"
TOKEN_ENV = "CRM_HUBSPOT_TOKEN"
TOKEN = "pat-na1-test-token"
ENV = {TOKEN_ENV: TOKEN}
UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"


def destination(
    base_url: str = SIM_URL,
    identifier: str = "email",
    fields: list[FieldMapping] | None = None,
    sync_mode: SyncMode = SyncMode.MIRROR,
) -> Destination:
    return Destination(
        name="crm_hubspot",
        owner="crm-team",
        config=HubSpotConfig(base_url=base_url, token_env=TOKEN_ENV, timeout_seconds=5),
        contract=Contract(
            version=1,
            identifier=Identifier(
                name=identifier,
                source="email" if identifier == "email" else "profile_id",
                type=TraitType.EMAIL if identifier == "email" else TraitType.STRING,
            ),
            fields=fields
            if fields is not None
            else [
                FieldMapping(name="firstname", source="first_name"),
                FieldMapping(name="plan", source="plan"),
            ],
            sync_mode=sync_mode,
            batch_size=100,
        ),
    )


class Sim(SimControl):
    """The simulator in-process, and its control API."""

    def __init__(self, **options: Any) -> None:
        super().__init__(create_app(**options), SIM_URL)


Connect = Callable[..., HubSpotClient]


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    simulator = Sim()
    yield simulator
    await simulator.aclose()


@pytest.fixture
async def connect(sim: Sim) -> AsyncIterator[Connect]:
    """Build clients of a simulator (the `sim` fixture's by default); closes them afterwards."""
    async with connector(
        HubSpotClient,
        "test_sync",
        default_destination=destination,
        default_env=ENV,
        default_transport=sim.transport,
    ) as make:
        yield make


# -- delivery and idempotency ------------------------------------------------------------------


async def test_upserts_land_as_contacts_with_string_properties(sim: Sim, connect: Connect) -> None:
    fields = [
        FieldMapping(name="firstname", source="first_name"),
        FieldMapping(name="lifetime_value", source="lifetime_value", type=TraitType.NUMBER),
        FieldMapping(name="vip", source="vip", type=TraitType.BOOLEAN),
    ]
    client = connect(destination(fields=fields))

    outcome = await client.send(
        batch(
            upsert("ada@example.com", firstname="Ada", lifetime_value=900.5, vip=True),
            upsert("bob@example.com", firstname="Bob", lifetime_value=12, vip=False),
        ),
        "batch-1",
    )

    assert outcome.accepted == 2 and list(outcome.rejections) == []
    records = await sim.records()
    assert set(records) == {"ada@example.com", "bob@example.com"}
    ada = records["ada@example.com"]
    assert ada["firstname"] == "Ada" and ada["lifetime_value"] == "900.5" and ada["vip"] == "true"
    assert ada["email"] == "ada@example.com" and ada["hs_object_id"].isdigit()
    assert records["bob@example.com"]["vip"] == "false"


async def test_resending_a_batch_leaves_every_contact_as_it_was(sim: Sim, connect: Connect) -> None:
    client = connect()
    sent = batch(*(upsert(f"u{i}@example.com", firstname=f"U{i}", plan="pro") for i in range(5)))
    await client.send(sent, "batch-1")
    before = await sim.records()
    await asyncio.sleep(0.01)  # a rewrite would move lastmodifieddate

    again = await client.send(sent, "batch-1")

    assert again.accepted == 5
    assert await sim.records() == before


async def test_a_null_clears_the_property_and_an_update_keeps_the_record_id(
    sim: Sim, connect: Connect
) -> None:
    client = connect()
    await client.send(batch(upsert("ada@example.com", firstname="Ada", plan="pro")), "b-1")
    record_id = (await sim.records())["ada@example.com"]["hs_object_id"]

    await client.send(batch(upsert("ada@example.com", firstname="Ada", plan=None)), "b-2")

    ada = (await sim.records())["ada@example.com"]
    assert ada["plan"] == "" and ada["hs_object_id"] == record_id


def test_warehouse_values_become_hubspot_property_text() -> None:
    assert property_text("Ada") == "Ada"
    assert property_text(None) == ""
    assert property_text(True) == "true"
    assert property_text(17) == "17"
    assert property_text(2.5) == "2.5"
    assert property_text(["red", "blue"]) == "red;blue"


# -- per-row rejections ------------------------------------------------------------------------


async def test_a_207_rejects_only_the_rows_hubspot_names_with_its_reasons(
    sim: Sim, connect: Connect
) -> None:
    await sim.configure(reject_keys=["bob@example.com"])
    client = connect()

    outcome = await client.send(
        batch(
            upsert("ada@example.com", firstname="Ada"),
            upsert("bob@example.com", firstname="Bob"),
            upsert("not-an-email", firstname="Nobody"),
        ),
        "batch-1",
    )

    assert outcome.accepted == 1
    reasons = dict(outcome.rejections)
    assert set(reasons) == {"bob@example.com", "not-an-email"}
    assert reasons["bob@example.com"].startswith("VALIDATION_ERROR: ")
    assert reasons["not-an-email"] == "INVALID_EMAIL: Email address not-an-email is invalid"
    assert set(await sim.records()) == {"ada@example.com"}
    assert (await sim.stats())["status_counts"] == {"207": 1}


async def test_a_batch_failed_by_one_bad_value_is_halved_until_that_row_stands_alone(
    sim: Sim, connect: Connect
) -> None:
    # By a custom unique id, with email as a plain property: a bad email fails the whole batch.
    fields = [FieldMapping(name="email", source="email"), FieldMapping(name="plan", source="plan")]
    client = connect(destination(identifier="customer_id", fields=fields))
    rows = [upsert(f"c{i}", email=f"c{i}@example.com", plan="pro") for i in range(4)]
    rows[2] = upsert("c2", email="c2-at-example", plan="pro")

    outcome = await client.send(batch(*rows), "batch-1")

    assert outcome.accepted == 3
    [(key, reason)] = outcome.rejections
    assert key == "c2" and reason == "INVALID_EMAIL: Email address c2-at-example is invalid"
    assert set(await sim.records()) == {"c0", "c1", "c3"}
    # 4 rows -> 2 + 2 -> the bad half as 1 + 1: five requests, three of them refused.
    assert (await sim.stats())["status_counts"] == {"200": 2, "400": 3}


async def test_a_property_the_account_lacks_is_fatal_without_halving(connect: Connect) -> None:
    strict = Sim(properties=["plan"])
    fields = [FieldMapping(name="plan", source="plan"), FieldMapping(name="tier", source="tier")]
    client = connect(destination(fields=fields), transport=strict.transport)

    with pytest.raises(DestinationRefusedError, match="no contact property tier"):
        await client.send(
            batch(upsert("a@example.com", plan="pro", tier="gold"), upsert("b@example.com")), "b"
        )
    assert (await strict.stats())["requests"] == 1


async def test_an_error_naming_no_row_rejects_the_rows_hubspot_did_not_confirm(
    connect: Connect,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            207,
            json={
                "status": "COMPLETE",
                "results": [{"id": "1", "properties": {"email": "ada@example.com"}}],
                "errors": [{"status": "error", "category": "CONFLICT", "message": "busy"}],
            },
        )

    client = connect(transport=httpx.MockTransport(handler))
    outcome = await client.send(
        batch(upsert("ada@example.com", plan="a"), upsert("bob@example.com", plan="b")), "b"
    )

    assert list(outcome.rejections) == [("bob@example.com", "CONFLICT: busy")]


# -- limits ------------------------------------------------------------------------------------


def test_the_spec_states_hubspots_documented_limits() -> None:
    assert SPEC.max_batch_size == 100
    assert SPEC.rate_limit is not None
    assert (SPEC.rate_limit.requests, SPEC.rate_limit.per_seconds) == (100, 10)
    assert SPEC.max_field_chars == 65_536
    assert SPEC.set_if_empty and Capability.REMOVE in SPEC.operations


async def test_the_simulator_refuses_more_than_100_inputs(sim: Sim) -> None:
    inputs = [
        {"idProperty": "email", "id": f"u{i}@example.com", "properties": {}} for i in range(101)
    ]
    response = await sim.control.post(
        UPSERT_PATH, json={"inputs": inputs}, headers={"Authorization": "Bearer t"}
    )

    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"
    assert await sim.records() == {}


async def test_a_long_batch_goes_in_requests_of_at_most_100(sim: Sim, connect: Connect) -> None:
    client = connect()
    outcome = await client.send(
        batch(*(upsert(f"u{i}@example.com", plan="pro") for i in range(250))), "b"
    )

    assert outcome.accepted == 250
    stats = await sim.stats()
    assert stats["requests"] == 3 and stats["max_batch_records"] == 100
    assert len(await sim.records()) == 250


async def test_bodies_over_the_payload_limit_are_split(sim: Sim, connect: Connect) -> None:
    client = connect(max_payload_bytes=600)
    outcome = await client.send(
        batch(*(upsert(f"user{i}@example.com", firstname="x" * 40) for i in range(20))), "b"
    )

    assert outcome.accepted == 20
    stats = await sim.stats()
    assert stats["requests"] > 1 and 0 < stats["max_body_bytes"] <= 600
    assert len(await sim.records()) == 20


def test_request_slices_respect_count_and_bytes_and_send_an_oversized_input_alone() -> None:
    assert request_slices([10] * 5, max_inputs=2, max_bytes=10_000) == [
        slice(0, 2),
        slice(2, 4),
        slice(4, 5),
    ]
    envelope = len(b'{"inputs":[]}')
    assert request_slices([50, 50, 500, 50], 100, envelope + 101) == [
        slice(0, 2),
        slice(2, 3),
        slice(3, 4),
    ]


# -- rate limits -------------------------------------------------------------------------------


async def test_a_429_raises_with_its_retry_after_and_no_request_arrives_before_it(
    sim: Sim, connect: Connect
) -> None:
    await sim.configure(force_status=[429], force_retry_after=1)
    limiter = RateLimiter(None)
    client = connect(limiter=limiter)
    sent = batch(upsert("ada@example.com", plan="pro"))

    with pytest.raises(RateLimitedError) as raised:
        await client.send(sent, "b")
    started = time.monotonic()
    outcome = await client.send(sent, "b")

    assert raised.value.retry_after == 1.0
    assert time.monotonic() - started >= 0.9
    assert outcome.accepted == 1
    stats = await sim.stats()
    assert stats["early_retries"] == 0 and stats["status_counts"] == {"200": 1, "429": 1}


async def test_the_rate_limit_headers_hold_the_limiter_before_hubspot_refuses(
    sim: Sim, connect: Connect
) -> None:
    await sim.configure(rate_limit={"requests": 2, "per_seconds": 1})
    client = connect(limiter=RateLimiter(None))  # no allowance of its own: only the headers
    started = time.monotonic()

    for number in range(3):
        await client.send(batch(upsert(f"u{number}@example.com"), number=number), f"b{number}")

    # The second answer said Remaining: 0, so the third waited for the window.
    assert time.monotonic() - started >= 0.9
    assert (await sim.stats())["status_counts"] == {"200": 3}


async def test_a_429_without_retry_after_waits_for_the_window(sim: Sim, connect: Connect) -> None:
    await sim.configure(rate_limit={"requests": 1, "per_seconds": 2})
    await connect().send(batch(upsert("a@example.com")), "b-1")
    # A sender that has not seen the headers (another worker process) is refused.
    limiter = RateLimiter(None)

    with pytest.raises(RateLimitedError) as raised:
        await connect(limiter=limiter).send(batch(upsert("b@example.com")), "b-2")

    assert raised.value.retry_after == 2.0  # X-HubSpot-RateLimit-Interval-Milliseconds: 2000
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(limiter.acquire(), 0.2)


async def test_the_daily_limit_holds_senders_for_an_hour(connect: Connect) -> None:
    daily = Sim(daily_limit=1)
    limiter = RateLimiter(None)
    await connect(limiter=limiter, transport=daily.transport).send(
        batch(upsert("a@example.com")), "b-1"
    )

    # Daily-Remaining: 0 on that answer: nobody sends until it has reset.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(limiter.acquire(), 0.2)
    with pytest.raises(RateLimitedError) as raised:
        await connect(transport=daily.transport).send(batch(upsert("b@example.com")), "b-2")
    assert raised.value.retry_after == 3600.0
    assert "DAILY" in str(raised.value)


# -- other failures ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retryable(sim: Sim, connect: Connect, status: int) -> None:
    await sim.configure(force_status=[status])
    with pytest.raises(DestinationUnavailableError, match=f"HTTP {status}"):
        await connect().send(batch(upsert("a@example.com")), "b")


async def test_an_outage_is_retryable_after_the_announced_delay(sim: Sim, connect: Connect) -> None:
    await sim.configure(outage=True)
    with pytest.raises(DestinationUnavailableError) as raised:
        await connect().send(batch(upsert("a@example.com")), "b")
    assert raised.value.retry_after == 1.0


async def test_a_wrong_token_is_fatal_and_names_the_variable_not_the_token(
    connect: Connect,
) -> None:
    guarded = Sim(token="the-right-token")
    with pytest.raises(DestinationRefusedError) as raised:
        await connect(transport=guarded.transport).send(batch(upsert("a@example.com")), "b")
    assert raised.value.status == 401
    assert TOKEN_ENV in str(raised.value) and TOKEN not in str(raised.value)


@pytest.mark.parametrize("status", [400, 403, 404])
async def test_a_refused_request_is_fatal(sim: Sim, connect: Connect, status: int) -> None:
    await sim.configure(force_status=[status])
    with pytest.raises(DestinationRefusedError) as raised:
        await connect().send(batch(upsert("a@example.com"), upsert("b@example.com")), "b")
    assert raised.value.status == status
    assert (await sim.stats())["requests"] == 1  # a request-level 400 is not halved


async def test_a_timeout_is_retryable(connect: Connect) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(DestinationUnavailableError, match="timed out"):
        await connect(transport=httpx.MockTransport(handler)).send(batch(upsert("a@x.io")), "b")


async def test_a_200_that_is_not_json_is_retryable(connect: Connect) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>proxy"))
    with pytest.raises(DestinationUnavailableError, match="not HubSpot's JSON"):
        await connect(transport=transport).send(batch(upsert("a@x.io")), "b")


# -- write: if_empty and removes ---------------------------------------------------------------


async def test_if_empty_fields_never_overwrite_a_value_hubspot_holds(
    sim: Sim, connect: Connect
) -> None:
    await connect().send(
        batch(upsert("ada@example.com", firstname="Ada", plan="enterprise"), upsert("bob@x.io")),
        "seed",
    )
    fields = [
        FieldMapping(name="firstname", source="first_name"),
        FieldMapping(name="plan", source="plan", write=WriteRule.IF_EMPTY),
    ]
    client = connect(destination(fields=fields))

    outcome = await client.send(
        batch(
            upsert("ada@example.com", firstname="Ada L.", plan="pro"),
            upsert("bob@x.io", firstname="Bob", plan="pro"),
            upsert("cy@example.com", firstname="Cy", plan="starter"),
        ),
        "b",
    )

    assert outcome.accepted == 3
    records = await sim.records()
    assert records["ada@example.com"]["firstname"] == "Ada L."
    assert records["ada@example.com"]["plan"] == "enterprise"  # held: left alone
    assert records["bob@x.io"]["plan"] == "pro"  # empty: filled
    assert records["cy@example.com"]["plan"] == "starter"  # new contact
    assert (await sim.stats())["requests"] == 2 + 1  # seed, then read + upsert


async def test_removes_archive_the_contacts_found_by_their_identifier(
    sim: Sim, connect: Connect
) -> None:
    client = connect()
    await client.send(batch(upsert("ada@example.com"), upsert("bob@example.com")), "b-1")

    outcome = await client.send(
        batch(remove("ada@example.com"), remove("never@example.com"), number=1), "b-2"
    )
    assert outcome.accepted == 2 and list(outcome.rejections) == []
    assert set(await sim.records()) == {"bob@example.com"}

    again = await client.send(batch(remove("ada@example.com"), number=1), "b-2")
    assert again.accepted == 1
    assert set(await sim.records()) == {"bob@example.com"}


# -- credentials and preflight -----------------------------------------------------------------


def test_the_token_comes_from_the_named_variable() -> None:
    config = HubSpotConfig(token_env=TOKEN_ENV)
    assert resolve_token(config, "production", ENV) == TOKEN
    assert resolve_token(config, "development", {}) == DEV_HUBSPOT_TOKEN
    with pytest.raises(DestinationConfigError, match=f"{TOKEN_ENV}.*not set"):
        resolve_token(config, "production", {})
    with pytest.raises(DestinationConfigError, match="placeholder"):
        resolve_token(config, "production", {TOKEN_ENV: DEV_HUBSPOT_TOKEN})


async def test_the_token_is_sent_as_a_bearer_token(connect: Connect) -> None:
    guarded = Sim(token=TOKEN)
    outcome = await connect(transport=guarded.transport).send(batch(upsert("a@example.com")), "b")
    assert outcome.accepted == 1


async def test_preflight_passes_for_email_and_for_a_unique_custom_property(
    connect: Connect,
) -> None:
    await connect().preflight()
    account = Sim(properties=["customer_id"], unique_properties=["customer_id"])
    await connect(destination(identifier="customer_id"), transport=account.transport).preflight()


@pytest.mark.parametrize(
    ("identifier", "options", "message"),
    [
        ("phone", {}, "does not hold unique values"),
        ("customer_id", {"properties": []}, "no contact property 'customer_id'"),
    ],
)
async def test_preflight_refuses_an_identifier_hubspot_cannot_upsert_by(
    connect: Connect, identifier: str, options: dict[str, Any], message: str
) -> None:
    client = connect(destination(identifier=identifier), transport=Sim(**options).transport)
    with pytest.raises(DestinationConfigError, match=message):
        await client.preflight()


async def test_preflight_with_a_refused_token_is_fatal(connect: Connect) -> None:
    with pytest.raises(DestinationRefusedError):
        await connect(transport=Sim(token="another").transport).preflight()


# -- served as the hub and the registry serve it -----------------------------------------------


async def test_the_simulator_works_mounted_under_a_prefix(connect: Connect) -> None:
    hub = Starlette(routes=[Mount("/hubspot", app=create_app())])
    transport = httpx.ASGITransport(app=hub)
    client = connect(destination(base_url=f"{SIM_URL}/hubspot"), transport=transport)

    await client.preflight()
    outcome = await client.send(batch(upsert("a@example.com", plan="pro")), "b")

    assert outcome.accepted == 1
    async with httpx.AsyncClient(transport=transport, base_url=SIM_URL) as control:
        records = (await control.get("/hubspot/_sim/records")).json()
    assert records["count"] == 1 and "a@example.com" in records["records"]


async def test_the_registry_builds_a_client_that_reaches_the_served_simulator() -> None:
    with run_in_thread(registry.simulator_app("hubspot")) as base_url:
        dest = destination().model_copy(update={"config": SPEC.example_config(base_url)})
        client = registry.create_client(dest, "test_sync", RateLimiter(None), "development", {})
        try:
            await client.preflight()
            outcome = await client.send(batch(upsert("a@example.com", plan="pro")), "b")
        finally:
            await client.aclose()
        records = httpx.get(f"{base_url}/_sim/records").json()
    assert isinstance(client, HubSpotClient) and outcome.accepted == 1
    assert records["records"]["a@example.com"]["plan"] == "pro"


def test_hubspots_python_sdk_upserts_and_reads_against_the_simulator() -> None:
    from hubspot import HubSpot
    from hubspot.crm.contacts import (
        BatchInputSimplePublicObjectBatchInputUpsert,
        BatchReadInputSimplePublicObjectId,
        SimplePublicObjectBatchInputUpsert,
        SimplePublicObjectId,
    )
    from hubspot.crm.contacts.exceptions import ApiException

    with run_in_thread(create_app(token=TOKEN)) as base_url:
        contacts = HubSpot(access_token=TOKEN, host=base_url).crm.contacts.batch_api
        upserted = contacts.upsert(
            BatchInputSimplePublicObjectBatchInputUpsert(
                inputs=[
                    SimplePublicObjectBatchInputUpsert(
                        id_property="email", id="ada@example.com", properties={"plan": "pro"}
                    ),
                    SimplePublicObjectBatchInputUpsert(
                        id_property="email", id="not-an-email", properties={"plan": "pro"}
                    ),
                ]
            )
        )
        read = contacts.read(
            BatchReadInputSimplePublicObjectId(
                id_property="email",
                inputs=[
                    SimplePublicObjectId(id="ada@example.com"),
                    SimplePublicObjectId(id="x@y.io"),
                ],
                properties=["plan"],
                properties_with_history=[],
            )
        )
        with pytest.raises(ApiException) as refused:
            HubSpot(access_token="wrong", host=base_url).crm.contacts.batch_api.read(
                BatchReadInputSimplePublicObjectId(
                    inputs=[], properties=[], properties_with_history=[]
                )
            )

    assert upserted.status == "COMPLETE"
    assert [r.new for r in upserted.results] == [True]
    assert upserted.errors[0].context == {"ids": ["not-an-email"]}
    assert [(r.id, r.properties["plan"]) for r in read.results] == [(upserted.results[0].id, "pro")]
    assert read.errors[0].category == "OBJECT_NOT_FOUND"
    assert refused.value.status == 401
