"""The Klaviyo client against the Klaviyo simulator, and Klaviyo's own SDK against it too.

Mostly in-process (`httpx.ASGITransport`); the official SDK (urllib3) and the mounted
simulator go over real HTTP to a uvicorn server on a thread. What lands is read back
through the simulator's control API.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import orjson
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
)
from switchyard.destinations import registry
from switchyard.destinations.klaviyo.client import (
    KlaviyoClient,
    pack_jobs,
    profile_attributes,
    resolve_api_key,
)
from switchyard.destinations.klaviyo.simulator import create_app
from switchyard.destinations.klaviyo.spec import (
    DEV_API_KEY,
    MAX_JOB_BYTES,
    SIM_LIST_ID,
    KlaviyoConfig,
)
from switchyard.destinations.spec import Capability
from switchyard.errors import (
    DestinationConfigError,
    DestinationRefusedError,
    DestinationUnavailableError,
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

KEY = "pk_test_3f9a1c"
KEY_ENV = "KLAVIYO_TEST_KEY"
ENV = {KEY_ENV: KEY}
SIM_URL = "http://sim"
JOBS = "/api/profile-bulk-import-jobs"


def config(**overrides: Any) -> KlaviyoConfig:
    settings: dict[str, Any] = {
        "base_url": SIM_URL,
        "api_key_env": KEY_ENV,
        "list_id": SIM_LIST_ID,
        "poll_interval_seconds": 0.01,
        "poll_max_interval_seconds": 0.05,
        "job_timeout_seconds": 5,
        **overrides,
    }
    return KlaviyoConfig(**settings)


def destination(
    conf: KlaviyoConfig | None = None,
    sync_mode: SyncMode = SyncMode.MIRROR,
    identifier: str = "email",
) -> Destination:
    return Destination(
        name="klaviyo_newsletter",
        owner="lifecycle",
        config=conf or config(),
        contract=Contract(
            version=1,
            identifier=Identifier(
                name=identifier,
                source="email" if identifier == "email" else "profile_id",
                type=TraitType.EMAIL if identifier == "email" else TraitType.STRING,
            ),
            fields=[
                FieldMapping(name="first_name", source="first_name"),
                FieldMapping(name="plan", source="plan"),
            ],
            sync_mode=sync_mode,
            batch_size=10_000,
        ),
    )


class Simulator(SimControl):
    def __init__(self) -> None:
        super().__init__(create_app(api_keys={KEY}), SIM_URL)

    async def post(self, body: bytes, **headers: str) -> httpx.Response:
        sent = {
            "Authorization": f"Klaviyo-API-Key {KEY}",
            "revision": "2025-10-15",
            "content-type": "application/vnd.api+json",
            **headers,
        }
        return await self.control.post(
            JOBS, content=body, headers={k: v for k, v in sent.items() if v}
        )


Connect = Callable[..., KlaviyoClient]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator()
    yield simulator
    await simulator.aclose()


@pytest.fixture
async def connect(sim: Simulator) -> AsyncIterator[Connect]:
    async with connector(
        KlaviyoClient,
        "newsletter_sync",
        default_destination=destination,
        default_env=ENV,
        default_transport=sim.transport,
    ) as make:
        yield make


def import_document(*profiles: dict[str, Any], lists: tuple[str, ...] = ()) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": "profile-bulk-import-job",
        "attributes": {
            "profiles": {"data": [{"type": "profile", "attributes": p} for p in profiles]}
        },
    }
    if lists:
        data["relationships"] = {"lists": {"data": [{"type": "list", "id": i} for i in lists]}}
    return {"data": data}


# -- the request -------------------------------------------------------------------------------


def test_fields_go_where_klaviyo_keeps_them_and_nulls_are_left_out() -> None:
    fields = {
        "first_name": "Ada",
        "phone_number": "+447700900123",
        "location.city": "London",
        "location.latitude": 51.5072,
        "properties.tier": "gold",
        "plan": "pro",
        "lifetime_value": 900.5,
        "organization": 42,
        "last_name": None,
    }
    attributes = profile_attributes("email", "ada@example.com", orjson.dumps(fields).decode())

    assert attributes == {
        "email": "ada@example.com",
        "first_name": "Ada",
        "phone_number": "+447700900123",
        "organization": "42",
        "location": {"city": "London", "latitude": 51.5072},
        "properties": {"tier": "gold", "plan": "pro", "lifetime_value": 900.5},
    }


def test_jobs_are_split_by_profile_count_and_by_payload_bytes() -> None:
    profiles = [(f"u{i}@example.com", b'{"type":"profile","attributes":{}}') for i in range(25)]

    by_count = pack_jobs(profiles, "L1", max_profiles=10)
    by_bytes = pack_jobs(profiles, None, max_bytes=400)

    assert [len(job.keys) for job in by_count] == [10, 10, 5]
    assert [key for job in by_bytes for key in job.keys] == [key for key, _ in profiles]
    assert len(by_bytes) > 1
    for job in by_count + by_bytes:
        document = orjson.loads(job.body)
        assert len(document["data"]["attributes"]["profiles"]["data"]) == len(job.keys)
    assert all(len(job.body) <= 400 for job in by_bytes)
    lists = orjson.loads(by_count[0].body)["data"]["relationships"]["lists"]["data"]
    assert lists == [{"type": "list", "id": "L1"}]
    assert "relationships" not in orjson.loads(by_bytes[0].body)["data"]


# -- round trips -------------------------------------------------------------------------------


async def test_profiles_land_on_the_list_after_the_job_is_polled_to_completion(
    sim: Simulator, connect: Connect
) -> None:
    await sim.configure(job_polls=2)
    limiter = RecordingLimiter()
    client = connect(limiter=limiter)

    outcome = await client.send(
        batch(upsert("ada@example.com", first_name="Ada", plan="pro"), upsert("bob@example.com")),
        "b-1",
    )

    assert outcome.accepted == 2 and list(outcome.rejections) == []
    records = await sim.records()
    assert records["ada@example.com"]["first_name"] == "Ada"
    assert records["ada@example.com"]["properties"] == {"plan": "pro"}
    assert records["bob@example.com"]["lists"] == [SIM_LIST_ID]
    stats = await sim.stats()
    # One job created, then polled until the third poll reported it complete.
    assert stats["status_counts"] == {"200": 3, "202": 1}
    assert limiter.acquired == 4, "every request, polls included, waits for the limiter"


async def test_resending_the_same_batch_leaves_klaviyo_unchanged(
    sim: Simulator, connect: Connect
) -> None:
    client = connect()
    sent = batch(upsert("ada@example.com", first_name="Ada", plan="pro"), upsert("c@example.com"))

    await client.send(sent, "b-1")
    before = await sim.records()
    await client.send(sent, "b-1")

    assert await sim.records() == before
    assert len(before) == 2


async def test_failed_profiles_come_back_as_rejections_with_klaviyos_reasons(
    sim: Simulator, connect: Connect
) -> None:
    await sim.configure(reject_keys=["blocked@example.com"])
    client = connect()

    outcome = await client.send(
        batch(
            upsert("ok@example.com", plan="pro"),
            upsert("blocked@example.com"),
            upsert("not-an-email"),
        ),
        "b-1",
    )

    reasons = dict(outcome.rejections)
    assert outcome.accepted == 1
    assert set(reasons) == {"blocked@example.com", "not-an-email"}
    assert "refused by this account's import rules" in reasons["blocked@example.com"]
    assert reasons["not-an-email"].startswith("invalid: Invalid email address")
    assert list(await sim.records()) == ["ok@example.com"]


async def test_import_errors_are_read_page_by_page(sim: Simulator, connect: Connect) -> None:
    client = connect()
    bad = [upsert(f"bad-{i}") for i in range(130)]

    outcome = await client.send(batch(upsert("ok@example.com"), *bad), "b-1")

    assert outcome.accepted == 1
    assert {key for key, _ in outcome.rejections} == {f"bad-{i}" for i in range(130)}
    assert (await sim.stats())["status_counts"]["200"] >= 3  # the poll and two error pages


def _job_transport(errors: list[dict[str, Any]], failed: int) -> httpx.MockTransport:
    """A Klaviyo whose finished job reports `failed` failures and these import errors."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, json={"data": {"id": "J1", "attributes": {}}})
        if request.url.path.endswith("/import-errors"):
            return httpx.Response(200, json={"data": errors, "links": {"next": None}})
        attributes = {"status": "complete", "total_count": 3, "failed_count": failed}
        return httpx.Response(200, json={"data": {"id": "J1", "attributes": attributes}})

    return httpx.MockTransport(handle)


async def test_an_error_without_a_pointer_is_tied_to_its_row_by_the_payloads_identifier(
    connect: Connect,
) -> None:
    error = {"attributes": {"code": "invalid", "detail": "Nope.", "source": {}}}
    error["attributes"]["original_payload"] = {"email": "B@Example.com"}
    client = connect(transport=_job_transport([error], failed=1))

    outcome = await client.send(
        batch(upsert("a@example.com"), upsert("b@example.com"), upsert("c@example.com")), "b-1"
    )

    assert list(outcome.rejections) == [("b@example.com", "invalid: Nope.")]


async def test_failures_klaviyo_counts_but_does_not_name_reject_the_whole_job(
    connect: Connect,
) -> None:
    named = {
        "attributes": {
            "code": "invalid",
            "detail": "Bad.",
            "source": {"pointer": "/data/attributes/profiles/data/0"},
        }
    }
    client = connect(transport=_job_transport([named], failed=2))

    outcome = await client.send(
        batch(upsert("a@example.com"), upsert("b@example.com"), upsert("c@example.com")), "b-1"
    )

    reasons = dict(outcome.rejections)
    assert outcome.accepted == 0
    assert reasons["a@example.com"] == "invalid: Bad."
    assert "counted 2 failed profiles" in reasons["b@example.com"]


# -- removes: list membership ------------------------------------------------------------------


async def test_a_remove_takes_the_profile_off_the_list_and_keeps_the_profile(
    sim: Simulator, connect: Connect
) -> None:
    client = connect()
    await client.send(batch(upsert("a@example.com"), upsert("b@example.com")), "b-1")

    outcome = await client.send(batch(remove("a@example.com"), remove("never@example.com")), "b-2")

    assert outcome.accepted == 2 and list(outcome.rejections) == []
    records = await sim.records()
    assert records["a@example.com"]["lists"] == []
    assert records["b@example.com"]["lists"] == [SIM_LIST_ID]
    assert (await sim.stats())["status_counts"]["204"] == 1


async def test_profiles_keyed_by_phone_number_are_found_and_removed_by_it(
    sim: Simulator, connect: Connect
) -> None:
    client = connect(destination(identifier="phone_number"))
    await client.send(batch(upsert("+447700900123", first_name="Ada"), upsert("+15550100")), "b-1")

    outcome = await client.send(batch(remove("+447700900123")), "b-2")

    assert outcome.accepted == 1
    records = await sim.records()
    assert records["+447700900123"] == {
        "id": records["+447700900123"]["id"],
        "phone_number": "+447700900123",
        "first_name": "Ada",
        "lists": [],
    }
    assert records["+15550100"]["lists"] == [SIM_LIST_ID]


async def test_mirror_without_a_list_is_refused_before_anything_is_sent(connect: Connect) -> None:
    with pytest.raises(DestinationConfigError, match="list_id"):
        connect(destination(config(list_id=None), sync_mode=SyncMode.MIRROR))
    # Upsert-only syncs need no list.
    connect(destination(config(list_id=None), sync_mode=SyncMode.UPSERT))


def test_the_spec_offers_remove_and_declares_klaviyos_documented_limits() -> None:
    spec = registry.spec_for("klaviyo")
    assert Capability.REMOVE in spec.operations
    assert spec.max_batch_size == 10_000 and spec.max_payload_bytes == 5 * 1024 * 1024
    assert spec.rate_limit is not None
    assert (spec.rate_limit.requests, spec.rate_limit.per_seconds) == (150, 60)
    assert spec.identifiers == {"email", "phone_number", "external_id"}


# -- limits ------------------------------------------------------------------------------------


async def test_a_batch_over_five_megabytes_goes_as_several_jobs_within_the_limits(
    sim: Simulator, connect: Connect
) -> None:
    client = connect()
    filler = "x" * 600
    operations = [upsert(f"user{i}@example.com", bio=filler) for i in range(10_000)]
    operations.append(upsert("huge@example.com", bio="y" * 110_000))

    outcome = await client.send(batch(*operations), "big")

    assert outcome.accepted == 10_000
    assert [key for key, _ in outcome.rejections] == ["huge@example.com"]
    assert "100 KB" in outcome.rejections[0][1]
    stats = await sim.stats()
    assert stats["status_counts"]["202"] == 2
    assert stats["max_body_bytes"] <= MAX_JOB_BYTES
    assert len(await sim.records()) == 10_000


async def test_the_simulator_refuses_jobs_over_klaviyos_limits(sim: Simulator) -> None:
    many = import_document(*({"email": f"u{i}@example.com"} for i in range(10_001)))
    heavy = import_document(
        *({"email": f"u{i}@example.com", "title": "t" * 600} for i in range(9_000))
    )

    too_many = await sim.post(orjson.dumps(many))
    too_big = await sim.post(orjson.dumps(heavy))

    assert too_many.status_code == 400
    assert too_many.json()["errors"][0]["code"] == "invalid"
    assert too_many.json()["errors"][0]["source"]["pointer"] == "/data/attributes/profiles/data"
    assert too_big.status_code == 413
    assert await sim.records() == {}


# -- the simulator's validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "pointer"),
    [
        ({"data": {"type": "profile", "attributes": {}}}, "/data/type"),
        (
            {"data": {"type": "profile-bulk-import-job", "attributes": {}}},
            "/data/attributes/profiles",
        ),
        (
            import_document({"email": "a@example.com", "favourite": "tea"}),
            "/data/attributes/profiles/data/0/attributes/favourite",
        ),
        (
            import_document({"email": "a@example.com", "first_name": 7}),
            "/data/attributes/profiles/data/0/attributes/first_name",
        ),
        (
            import_document({"email": "a@example.com"}, lists=("NoSuch",)),
            "/data/relationships/lists/data/0/id",
        ),
    ],
)
async def test_malformed_documents_are_refused_whole_in_klaviyos_shape(
    sim: Simulator, document: dict[str, Any], pointer: str
) -> None:
    response = await sim.post(orjson.dumps(document))

    assert response.status_code in (400, 404)
    error = response.json()["errors"][0]
    assert {"id", "status", "code", "title", "detail"} <= set(error)
    assert error["source"]["pointer"] == pointer
    assert await sim.records() == {}


async def test_the_simulator_wants_a_key_a_revision_and_json_api(sim: Simulator) -> None:
    body = orjson.dumps(import_document({"email": "a@example.com"}))

    no_key = await sim.post(body, Authorization="")
    wrong_key = await sim.post(body, Authorization="Klaviyo-API-Key pk_wrong")
    no_revision = await sim.post(body, revision="")
    form = await sim.post(body, **{"content-type": "application/x-www-form-urlencoded"})

    assert (no_key.status_code, no_key.json()["errors"][0]["code"]) == (401, "not_authenticated")
    assert wrong_key.json()["errors"][0]["code"] == "authentication_failed"
    assert no_revision.status_code == 400
    assert no_revision.json()["errors"][0]["source"] == {"parameter": "revision"}
    assert form.status_code == 415
    assert (await sim.stats())["status_counts"] == {"400": 1, "401": 2, "415": 1}


# -- errors ------------------------------------------------------------------------------------


async def test_a_429_raises_with_its_retry_after_and_holds_the_limiter(
    sim: Simulator, connect: Connect
) -> None:
    await sim.configure(force_status=[429], force_retry_after=1)
    limiter = RecordingLimiter()
    client = connect(limiter=limiter)

    with pytest.raises(RateLimitedError) as raised:
        await client.send(batch(upsert("a@example.com")), "b-1")

    assert raised.value.retry_after == 1
    assert "throttled" in str(raised.value)
    assert limiter.holds == [1]
    assert await sim.records() == {}


async def test_throttling_while_polling_is_waited_out_not_failed(
    sim: Simulator, connect: Connect
) -> None:
    await sim.configure(force_status=[202, 429], force_retry_after=1)
    limiter = RecordingLimiter()
    client = connect(limiter=limiter)

    outcome = await client.send(batch(upsert("a@example.com")), "b-1")

    assert outcome.accepted == 1
    assert limiter.holds == [1]
    stats = await sim.stats()
    assert stats["early_retries"] == 0
    # A throttled poll is not a poll: the job still answered "processing", then "complete".
    assert stats["status_counts"] == {"200": 2, "202": 1, "429": 1}


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retryable(sim: Simulator, connect: Connect, status: int) -> None:
    await sim.configure(force_status=[status])
    with pytest.raises(DestinationUnavailableError, match=str(status)):
        await connect().send(batch(upsert("a@example.com")), "b-1")


async def test_an_outage_is_retryable_after_the_announced_delay(
    sim: Simulator, connect: Connect
) -> None:
    await sim.configure(outage=True)
    with pytest.raises(DestinationUnavailableError) as raised:
        await connect().send(batch(upsert("a@example.com")), "b-1")
    assert raised.value.retry_after == 1


async def test_a_wrong_key_is_fatal_and_names_the_variable_not_the_key(
    connect: Connect,
) -> None:
    client = connect(env={KEY_ENV: "pk_revoked_key"})
    with pytest.raises(DestinationRefusedError) as raised:
        await client.send(batch(upsert("a@example.com")), "b-1")
    assert raised.value.status == 401
    assert KEY_ENV in str(raised.value) and "pk_revoked_key" not in str(raised.value)


async def test_a_forbidden_key_is_fatal(sim: Simulator, connect: Connect) -> None:
    await sim.configure(force_status=[403])
    with pytest.raises(DestinationRefusedError) as raised:
        await connect().send(batch(upsert("a@example.com")), "b-1")
    assert raised.value.status == 403


async def test_a_job_that_does_not_finish_in_time_fails_the_batch_as_retryable(
    sim: Simulator, connect: Connect
) -> None:
    await sim.configure(job_polls=100_000)
    client = connect(destination(config(job_timeout_seconds=0.2)))
    sent = batch(upsert("a@example.com", plan="pro"))

    with pytest.raises(DestinationUnavailableError, match="did not finish within"):
        await client.send(sent, "b-1")
    before = await sim.records()
    await sim.configure(job_polls=0)
    outcome = await client.send(sent, "b-1")

    assert outcome.accepted == 1
    assert await sim.records() == before, "the re-sent upsert changes nothing"


async def test_a_cancelled_job_is_retryable(connect: Connect) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, json={"data": {"id": "J9"}})
        return httpx.Response(200, json={"data": {"attributes": {"status": "cancelled"}}})

    client = connect(transport=httpx.MockTransport(handle))
    with pytest.raises(RetryableError, match="cancelled"):
        await client.send(batch(upsert("a@example.com")), "b-1")


async def test_rate_limit_headers_feed_the_limiter(sim: Simulator, connect: Connect) -> None:
    await sim.configure(rate_limit={"requests": 3, "per_seconds": 60}, job_polls=1)
    limiter = RecordingLimiter()
    client = connect(limiter=limiter)

    await client.send(batch(upsert("a@example.com")), "b-1")

    # The job, then two polls: the third request spends the window's last request.
    assert limiter.observed == [(2, 0), (1, 0), (0, 20)]
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(limiter.acquire(), 0.05)


# -- preflight and credentials -----------------------------------------------------------------


async def test_preflight_checks_the_key_and_the_list(connect: Connect) -> None:
    await connect().preflight()
    with pytest.raises(DestinationConfigError, match="NoSuch"):
        await connect(destination(config(list_id="NoSuch"))).preflight()
    with pytest.raises(DestinationRefusedError):
        await connect(env={KEY_ENV: "pk_wrong"}).preflight()
    await connect(destination(config(list_id=None), sync_mode=SyncMode.UPSERT)).preflight()


async def test_preflight_of_a_closed_port_says_unavailable(connect: Connect) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = connect(destination(config(base_url=f"http://127.0.0.1:{port}")), transport=None)
    with pytest.raises(DestinationUnavailableError):
        await client.preflight()


def test_the_key_comes_from_its_variable_and_the_placeholder_only_in_development() -> None:
    conf = config()
    assert resolve_api_key(conf, "production", ENV) == KEY
    assert resolve_api_key(conf, "development", {}) == DEV_API_KEY
    with pytest.raises(DestinationConfigError, match=KEY_ENV):
        resolve_api_key(conf, "production", {})
    with pytest.raises(DestinationConfigError, match="placeholder"):
        resolve_api_key(conf, "production", {KEY_ENV: DEV_API_KEY})


# -- over HTTP: mounted like the hub, and Klaviyo's own SDK ----------------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    app = create_app(api_keys={KEY})
    with run_in_thread(Starlette(routes=[Mount("/klaviyo", app=app)]), health_path=None) as url:
        yield f"{url}/klaviyo"


async def test_the_client_works_against_the_simulator_mounted_under_a_prefix(
    served: str, connect: Connect
) -> None:
    client = connect(destination(config(base_url=served)), transport=None)
    await client.preflight()

    outcome = await client.send(batch(upsert("mounted@example.com"), upsert("nope")), "b-1")

    assert outcome.accepted == 1 and [key for key, _ in outcome.rejections] == ["nope"]
    records = httpx.get(f"{served}/_sim/records").json()["records"]
    assert "mounted@example.com" in records


def test_klaviyos_sdk_imports_polls_and_reads_errors_from_the_simulator(served: str) -> None:
    from klaviyo_api import KlaviyoAPI
    from openapi_client.exceptions import ApiException

    httpx.put(f"{served}/_sim/config", json={"job_polls": 1, "reject_keys": ["sdk-b@example.com"]})
    klaviyo = KlaviyoAPI(KEY, test_host=served, max_retries=0)
    document = import_document(
        {"email": "sdk-a@example.com", "first_name": "Ada", "properties": {"plan": "pro"}},
        {"email": "sdk-b@example.com"},
        lists=(SIM_LIST_ID,),
    )

    created = klaviyo.Profiles.bulk_import_profiles(document)
    job_id = created.data.id
    first = klaviyo.Profiles.get_bulk_import_profiles_job(job_id)
    second = klaviyo.Profiles.get_bulk_import_profiles_job(job_id)
    errors = klaviyo.Profiles.get_errors_for_bulk_import_profiles_job(job_id)

    assert created.data.attributes.status == "queued"
    assert first.data.attributes.status == "processing"
    assert second.data.attributes.status == "complete"
    assert (second.data.attributes.total_count, second.data.attributes.failed_count) == (2, 1)
    assert [e.attributes.source.pointer for e in errors.data] == [
        "/data/attributes/profiles/data/1"
    ]

    found = klaviyo.Profiles.get_profiles(filter='equals(email,"sdk-a@example.com")')
    assert found.data[0].attributes.properties == {"plan": "pro"}
    klaviyo.Lists.remove_profiles_from_list(
        SIM_LIST_ID, {"data": [{"type": "profile", "id": found.data[0].id}]}
    )
    records = httpx.get(f"{served}/_sim/records").json()["records"]
    assert records["sdk-a@example.com"]["lists"] == []

    with pytest.raises(ApiException) as refused:
        KlaviyoAPI("pk_wrong", test_host=served, max_retries=0).Profiles.bulk_import_profiles(
            document
        )
    assert refused.value.status == 401
