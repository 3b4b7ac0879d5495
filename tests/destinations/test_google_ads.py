"""Google Ads Customer Match: the REST client against the local simulator.

In-process (`httpx.ASGITransport`); a recording transport shows what went over the wire.
Google's official Python client speaks gRPC only, so there is no SDK test here: the
simulator is checked against Google's documented REST shapes instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
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
    TraitType,
)
from switchyard.delivery.ratelimit import RateLimiter
from switchyard.destinations import registry
from switchyard.destinations.credentials import resolve_credential
from switchyard.destinations.google_ads.client import (
    DEV_ACCESS_TOKEN,
    DEV_DEVELOPER_TOKEN,
    GoogleAdsClient,
    Member,
    job_consent,
    requests_for,
    row_errors,
)
from switchyard.destinations.google_ads.simulator import create_app
from switchyard.destinations.google_ads.spec import (
    MAX_IDENTIFIERS_PER_REQUEST,
    SIM_CUSTOMER_ID,
    SIM_OTHER_USER_LIST_ID,
    SIM_USER_LIST_ID,
    GoogleAdsConfig,
)
from switchyard.errors import (
    DestinationConfigError,
    DestinationRefusedError,
    DestinationUnavailableError,
    RateLimitedError,
)
from switchyard.identity.normalise import sha256_hex
from tests.destinations.support import (
    RecordingLimiter,
    SimControl,
    batch,
    connector,
    remove,
    upsert,
)

ENV = {"GOOGLE_ADS_DEVELOPER_TOKEN": "dev-token-123", "GOOGLE_ADS_ACCESS_TOKEN": "ya29.token"}
ROOT = f"/v21/customers/{SIM_CUSTOMER_ID}"
LIST = f"customers/{SIM_CUSTOMER_ID}/userLists/{SIM_USER_LIST_ID}"


def h(value: str) -> str:
    return sha256_hex(value)


def config(**overrides: Any) -> GoogleAdsConfig:
    settings: dict[str, Any] = {
        "base_url": "http://sim",
        "customer_id": SIM_CUSTOMER_ID,
        "user_list_id": SIM_USER_LIST_ID,
        "poll_interval_seconds": 0.001,
        "job_wait_seconds": 5,
        **overrides,
    }
    return GoogleAdsConfig(**settings)


def destination(
    by: str = "email", consent_purpose: str | None = "ads_personalisation", **overrides: Any
) -> Destination:
    other = "phone" if by == "email" else "email"
    return Destination(
        name="ads_audience",
        owner="growth",
        config=config(**overrides),
        contract=Contract(
            version=1,
            identifier=Identifier(name=by, source=by, type=TraitType(by)),
            fields=[
                FieldMapping(name=other, source=other, type=TraitType(other)),
                FieldMapping(name="plan", source="plan"),
            ],
            consent_purpose=consent_purpose,
        ),
    )


class Recorder(httpx.AsyncBaseTransport):
    """Passes requests through to the simulator and keeps them."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []
        self.responses: list[httpx.Response] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.requests.append(request)
        response = await self.inner.handle_async_request(request)
        self.responses.append(response)
        return response

    def paths(self) -> list[str]:
        return [r.url.path.removeprefix(ROOT) for r in self.requests]

    def bodies(self, suffix: str) -> list[Any]:
        return [orjson.loads(r.content) for r in self.requests if r.url.path.endswith(suffix)]


class Sim(SimControl):
    def __init__(self, app: Starlette) -> None:
        super().__init__(app, "http://sim")
        self.wire = Recorder(self.transport)


Connect = Callable[..., GoogleAdsClient]


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    simulator = Sim(create_app())
    yield simulator
    await simulator.aclose()


@pytest.fixture
async def connect(sim: Sim) -> AsyncIterator[Connect]:
    async with connector(
        GoogleAdsClient,
        "ads_sync",
        default_destination=destination,
        default_env=ENV,
        default_transport=sim.wire,
    ) as make:
        yield make


# -- the round trip --------------------------------------------------------------------------


async def test_upserts_land_as_hashed_members_of_the_user_list(sim: Sim, connect: Connect) -> None:
    outcome = await connect().send(
        batch(
            upsert("ada@example.com", phone="+16505551212", plan="pro"),
            upsert("bob@example.com", plan="free"),
        ),
        "key-0",
    )

    assert (outcome.accepted, list(outcome.rejections)) == (2, [])
    assert await sim.records() == {
        h("ada@example.com"): {
            "userLists": [LIST],
            "hashedEmail": [h("ada@example.com")],
            # Google hashes E.164 *with* the "+" (Meta drops it).
            "hashedPhoneNumber": [h("+16505551212")],
        },
        h("bob@example.com"): {"userLists": [LIST], "hashedEmail": [h("bob@example.com")]},
    }
    assert h("16505551212") not in str(await sim.records())
    paths = sim.wire.paths()
    assert paths[:3] == [
        "/offlineUserDataJobs:create",
        "/offlineUserDataJobs/900000001:addOperations",
        "/offlineUserDataJobs/900000001:run",
    ]
    assert set(paths[3:]) == {"/googleAds:search"}


async def test_requests_carry_googles_headers_and_the_jobs_consent(
    sim: Sim, connect: Connect
) -> None:
    client = connect(destination(login_customer_id="111-222-3333"))
    await client.send(batch(upsert("ada@example.com")), "key-0")

    for request in sim.wire.requests:
        assert request.headers["authorization"] == "Bearer ya29.token"
        assert request.headers["developer-token"] == "dev-token-123"
        assert request.headers["login-customer-id"] == "1112223333"
    (create,) = sim.wire.bodies(":create")
    assert create == {
        "job": {
            "type": "CUSTOMER_MATCH_USER_LIST",
            "customerMatchUserListMetadata": {
                "userList": LIST,
                "consent": {"adUserData": "GRANTED", "adPersonalization": "GRANTED"},
            },
        }
    }
    (add,) = sim.wire.bodies(":addOperations")
    assert add == {
        "enablePartialFailure": True,
        "operations": [{"create": {"userIdentifiers": [{"hashedEmail": h("ada@example.com")}]}}],
    }


def test_consent_is_granted_only_behind_a_consent_filter_unless_configured() -> None:
    filtered = destination(consent_purpose="ads").contract
    unfiltered = destination(consent_purpose=None).contract

    assert job_consent(config(), filtered) == {
        "adUserData": "GRANTED",
        "adPersonalization": "GRANTED",
    }
    assert job_consent(config(), unfiltered) is None
    assert job_consent(config(ad_user_data="DENIED"), unfiltered) == {"adUserData": "DENIED"}


async def test_resending_a_batch_creates_a_new_job_and_changes_nothing(
    sim: Sim, connect: Connect
) -> None:
    client = connect()
    rows = batch(upsert("ada@example.com", phone="+16505551212"), upsert("bob@example.com"))
    await client.send(rows, "key-0")
    state = await sim.records()

    again = await client.send(rows, "key-0")

    assert again.accepted == 2
    assert await sim.records() == state
    assert len(sim.wire.bodies(":create")) == 2


async def test_creates_and_removes_go_in_separate_jobs_and_removes_need_no_consent(
    sim: Sim, connect: Connect
) -> None:
    client = connect()
    await client.send(batch(upsert("ada@example.com"), upsert("bob@example.com")), "key-0")

    outcome = await client.send(batch(upsert("cy@example.com"), remove("bob@example.com")), "k1")

    assert outcome.accepted == 2
    assert set(await sim.records()) == {h("ada@example.com"), h("cy@example.com")}
    creates = sim.wire.bodies(":create")
    assert [c["job"]["customerMatchUserListMetadata"].get("consent") for c in creates] == [
        {"adUserData": "GRANTED", "adPersonalization": "GRANTED"},
        {"adUserData": "GRANTED", "adPersonalization": "GRANTED"},
        None,
    ]
    adds = sim.wire.bodies(":addOperations")
    assert [list(op) for add in adds[1:] for op in add["operations"]] == [["create"], ["remove"]]


async def test_membership_is_kept_per_user_list(sim: Sim, connect: Connect) -> None:
    other = f"customers/{SIM_CUSTOMER_ID}/userLists/{SIM_OTHER_USER_LIST_ID}"
    await connect().send(batch(upsert("ada@example.com")), "key-0")
    await connect(destination(user_list_id=SIM_OTHER_USER_LIST_ID)).send(
        batch(upsert("ada@example.com"), upsert("bob@example.com")), "key-0"
    )

    await connect().send(batch(remove("ada@example.com")), "key-1")

    records = await sim.records()
    assert records[h("ada@example.com")]["userLists"] == [other]
    assert records[h("bob@example.com")]["userLists"] == [other]


async def test_a_phone_keyed_audience_hashes_e164_with_the_plus(sim: Sim, connect: Connect) -> None:
    client = connect(destination(by="phone"))

    await client.send(batch(upsert("+442071838750", email=" Ada@Example.com ")), "key-0")

    assert await sim.records() == {
        h("+442071838750"): {
            "userLists": [LIST],
            "hashedEmail": [h("ada@example.com")],
            "hashedPhoneNumber": [h("+442071838750")],
        }
    }


async def test_the_simulator_works_mounted_under_a_prefix_as_the_hub_serves_it(
    connect: Connect,
) -> None:
    hub = Starlette(routes=[Mount("/google_ads", app=create_app())])
    client = connect(
        destination(base_url="http://hub/google_ads"), transport=httpx.ASGITransport(app=hub)
    )
    await client.preflight()

    outcome = await client.send(batch(upsert("ada@example.com")), "key-0")

    assert outcome.accepted == 1
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hub)) as control:
        records = (await control.get("http://hub/google_ads/_sim/records")).json()
    assert list(records["records"]) == [h("ada@example.com")]


# -- rows Google turns down -----------------------------------------------------------------


async def test_rows_turned_down_come_back_by_operation_index_with_googles_reason(
    sim: Sim, connect: Connect
) -> None:
    await sim.configure(reject_keys=[h("bob@example.com")])

    outcome = await connect().send(
        batch(upsert("ada@example.com"), upsert("bob@example.com"), upsert("cy@example.com")),
        "key-0",
    )

    assert outcome.accepted == 2
    assert list(outcome.rejections) == [
        (
            "bob@example.com",
            "offlineUserDataJobError.MISSING_USER_IDENTIFIER: "
            "The user identifier is missing valid data.",
        )
    ]
    assert set(await sim.records()) == {h("ada@example.com"), h("cy@example.com")}


async def test_a_key_that_cannot_be_normalised_is_rejected_without_being_sent(
    sim: Sim, connect: Connect
) -> None:
    outcome = await connect().send(batch(upsert("not-an-email"), upsert("ada@example.com")), "k")

    assert outcome.accepted == 1
    assert outcome.rejections[0][0] == "not-an-email"
    (add,) = sim.wire.bodies(":addOperations")
    assert len(add["operations"]) == 1


async def test_a_batch_whose_rows_are_all_turned_down_does_not_run_its_job(
    sim: Sim, connect: Connect
) -> None:
    await sim.configure(reject_rate=1.0)

    outcome = await connect().send(batch(upsert("ada@example.com")), "key-0")

    assert outcome.accepted == 0
    assert not [p for p in sim.wire.paths() if p.endswith(":run")]


async def test_the_simulator_locates_malformed_hashes_in_a_partial_failure(sim: Sim) -> None:
    good = {"create": {"userIdentifiers": [{"hashedEmail": h("ada@example.com")}]}}
    bad = {
        "create": {
            "userIdentifiers": [
                {"hashedEmail": h("bob@example.com")},
                {"hashedPhoneNumber": "+16505551212"},  # not hashed
            ]
        }
    }
    many = {"create": {"userIdentifiers": [{"hashedEmail": h(f"{i}@x.io")} for i in range(21)]}}
    async with authed(sim) as http:
        job = (await http.post(f"{ROOT}/offlineUserDataJobs:create", json=job_body())).json()
        answer = await http.post(
            f"/v21/{job['resourceName']}:addOperations",
            json={"enablePartialFailure": True, "operations": [good, bad, many]},
        )

    assert answer.status_code == 200
    failure = answer.json()["partialFailureError"]
    (detail,) = failure["details"]
    assert detail["@type"].endswith("google.ads.googleads.v21.errors.GoogleAdsFailure")
    first, second = detail["errors"]
    assert first["errorCode"] == {"offlineUserDataJobError": "INVALID_SHA256_FORMAT"}
    assert first["location"]["fieldPathElements"] == [
        {"fieldName": "operations", "index": 1},
        {"fieldName": "create"},
        {"fieldName": "user_identifiers", "index": 1},
        {"fieldName": "hashed_phone_number"},
    ]
    assert second["errorCode"] == {"offlineUserDataJobError": "TOO_MANY_USER_IDENTIFIERS"}
    assert row_errors(answer.json()) == [
        (
            1,
            "offlineUserDataJobError.INVALID_SHA256_FORMAT: The SHA256 encoded value is malformed.",
        ),
        (2, "offlineUserDataJobError.TOO_MANY_USER_IDENTIFIERS: " + second["message"]),
    ]


async def test_without_partial_failure_one_bad_operation_fails_the_request(sim: Sim) -> None:
    bad = {"create": {"userIdentifiers": [{"hashedEmail": "nope"}]}}
    async with authed(sim) as http:
        job = (await http.post(f"{ROOT}/offlineUserDataJobs:create", json=job_body())).json()
        answer = await http.post(
            f"/v21/{job['resourceName']}:addOperations", json={"operations": [bad]}
        )

    assert answer.status_code == 400
    assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"


async def test_the_simulator_refuses_creates_and_removes_in_one_job(sim: Sim) -> None:
    one = {"userIdentifiers": [{"hashedEmail": h("ada@example.com")}]}
    async with authed(sim) as http:
        job = (await http.post(f"{ROOT}/offlineUserDataJobs:create", json=job_body())).json()
        add = f"/v21/{job['resourceName']}:addOperations"
        first = await http.post(add, json={"operations": [{"create": one}]})
        mixed = await http.post(add, json={"operations": [{"remove": one}]})

    assert first.status_code == 200
    assert mixed.status_code == 400
    assert errors_of(mixed) == [{"offlineUserDataJobError": "CONFLICTING_OPERATION"}]


# -- limits ----------------------------------------------------------------------------------


def test_requests_are_split_at_100000_identifiers() -> None:
    members = [Member(f"k{i}", 20, b"x" * 10) for i in range(6000)]

    parts = [len(part) for part in requests_for(members, max_bytes=10**9)]

    assert parts == [MAX_IDENTIFIERS_PER_REQUEST // 20, 1000]


async def test_a_batch_over_the_byte_cap_goes_as_several_requests_to_one_job(
    sim: Sim, connect: Connect
) -> None:
    client = connect(max_payload_bytes=1000)
    rows = [upsert(f"user{i}@example.com") for i in range(40)]

    outcome = await client.send(batch(*rows), "key-0")

    assert outcome.accepted == 40
    adds = [r for r in sim.wire.requests if r.url.path.endswith(":addOperations")]
    assert len(adds) > 1 and all(len(r.content) <= 1000 for r in adds)
    assert len({r.url.path for r in adds}) == 1
    assert len(await sim.records()) == 40
    assert (await sim.stats())["max_body_bytes"] <= 1000


async def test_the_simulator_refuses_more_than_100000_identifiers_a_request(sim: Sim) -> None:
    op = {"create": {"userIdentifiers": [{"hashedEmail": h("a@b.co")}] * 20}}
    async with authed(sim) as http:
        job = (await http.post(f"{ROOT}/offlineUserDataJobs:create", json=job_body())).json()
        answer = await http.post(
            f"/v21/{job['resourceName']}:addOperations",
            content=orjson.dumps({"operations": [op] * (MAX_IDENTIFIERS_PER_REQUEST // 20 + 1)}),
        )

    assert answer.status_code == 400
    assert errors_of(answer) == [{"offlineUserDataJobError": "TOO_MANY_USER_IDENTIFIERS"}]


async def test_a_body_over_the_simulators_byte_cap_is_a_fatal_size_error(connect: Connect) -> None:
    app = create_app(max_body_bytes=500)
    client = connect(transport=httpx.ASGITransport(app=app))

    with pytest.raises(DestinationRefusedError, match="REQUEST_SIZE_LIMIT_EXCEEDED"):
        await client.send(batch(*[upsert(f"user{i}@example.com") for i in range(20)]), "k")


# -- the job's life --------------------------------------------------------------------------


async def test_the_batch_waits_for_its_job_to_succeed(sim: Sim, connect: Connect) -> None:
    await sim.configure(job_polls=3)

    await connect().send(batch(upsert("ada@example.com")), "key-0")

    assert sim.wire.paths().count("/googleAds:search") == 4
    assert list(await sim.records()) == [h("ada@example.com")]


async def test_a_job_still_running_at_the_deadline_counts_as_delivered(
    sim: Sim, connect: Connect
) -> None:
    await sim.configure(job_polls=1000)
    client = connect(destination(poll_interval_seconds=0.01, job_wait_seconds=0.05))

    outcome = await client.send(batch(upsert("ada@example.com")), "key-0")

    assert outcome.accepted == 1
    assert await sim.records() == {}  # Google has not applied it yet


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        ("UNKNOWN", DestinationUnavailableError),
        ("INSUFFICIENT_MATCHED_TRANSACTIONS", DestinationRefusedError),
    ],
)
async def test_a_failed_job_is_retryable_only_when_its_reason_says_nothing(
    connect: Connect, reason: str, error: type[Exception]
) -> None:
    client = connect(transport=httpx.ASGITransport(app=create_app(fail_jobs=reason)))

    with pytest.raises(error, match=f"FAILED \\({reason}\\)"):
        await client.send(batch(upsert("ada@example.com")), "key-0")


async def test_the_long_running_operation_reports_done_after_job_polls(sim: Sim) -> None:
    await sim.configure(job_polls=1)
    async with authed(sim) as http:
        job = (await http.post(f"{ROOT}/offlineUserDataJobs:create", json=job_body())).json()
        await http.post(
            f"/v21/{job['resourceName']}:addOperations",
            json={"operations": [{"create": {"userIdentifiers": [{"hashedEmail": h("a@b.co")}]}}]},
        )
        operation = (await http.post(f"/v21/{job['resourceName']}:run", json={})).json()
        polls = [(await http.get(f"/v21/{operation['name']}")).json()["done"] for _ in range(2)]

    assert operation["name"].startswith(f"customers/{SIM_CUSTOMER_ID}/operations/")
    assert polls == [False, True]


# -- whole-request errors --------------------------------------------------------------------


async def test_a_forced_429_is_rate_limited_with_retry_after_and_holds_the_limiter(
    sim: Sim, connect: Connect
) -> None:
    await sim.configure(force_status=[429], force_retry_after=1)
    limiter = RecordingLimiter()

    with pytest.raises(RateLimitedError) as caught:
        await connect(limiter=limiter).send(batch(upsert("ada@example.com")), "key-0")

    assert caught.value.retry_after == 1
    assert limiter.holds == [1]
    assert sim.wire.responses[-1].headers["retry-after"] == "1"
    assert (await sim.stats())["status_counts"] == {"429": 1}


async def test_a_quota_error_without_retry_after_uses_googles_retry_delay(
    sim: Sim, connect: Connect
) -> None:
    await sim.configure(rate_limit={"requests": 1, "per_seconds": 30})
    limiter = RecordingLimiter()

    with pytest.raises(RateLimitedError) as caught:
        await connect(limiter=limiter).send(batch(upsert("ada@example.com")), "key-0")

    created, refused = sim.wire.responses
    assert (created.status_code, refused.status_code) == (200, 429)
    assert "retry-after" not in refused.headers
    assert caught.value.retry_after == 30
    assert limiter.holds == [30]


async def test_a_quota_error_naming_no_delay_backs_off_the_configured_default(
    connect: Connect,
) -> None:
    def quota(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429, json={"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota"}}
        )

    limiter = RecordingLimiter()
    client = connect(
        destination(default_retry_after_seconds=7),
        limiter=limiter,
        transport=httpx.MockTransport(quota),
    )

    with pytest.raises(RateLimitedError) as caught:
        await client.send(batch(upsert("ada@example.com")), "key-0")

    assert caught.value.retry_after == 7 and limiter.holds == [7]


@pytest.mark.parametrize("status", [500, 503, 409])
async def test_server_errors_are_retryable(sim: Sim, connect: Connect, status: int) -> None:
    await sim.configure(force_status=[status])

    with pytest.raises(DestinationUnavailableError):
        await connect().send(batch(upsert("ada@example.com")), "key-0")


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_refusals_are_fatal(sim: Sim, connect: Connect, status: int) -> None:
    await sim.configure(force_status=[status])

    with pytest.raises(DestinationRefusedError, match="GOOGLE_ADS_ACCESS_TOKEN") as caught:
        await connect().send(batch(upsert("ada@example.com")), "key-0")

    assert caught.value.status == status


async def test_an_unknown_user_list_is_a_fatal_invalid_argument(connect: Connect) -> None:
    client = connect(destination(user_list_id="999"))

    with pytest.raises(DestinationRefusedError, match="INVALID_USER_LIST_ID"):
        await client.send(batch(upsert("ada@example.com")), "key-0")
    with pytest.raises(DestinationRefusedError, match="was not found"):
        await client.preflight()


async def test_an_unknown_customer_is_refused_permission(connect: Connect) -> None:
    client = connect(destination(customer_id="5555555555"))

    with pytest.raises(DestinationRefusedError, match="USER_PERMISSION_DENIED") as caught:
        await client.preflight()

    assert caught.value.status == 403


async def test_denied_consent_makes_google_refuse_the_creates(connect: Connect) -> None:
    client = connect(destination(ad_personalization="DENIED"))

    with pytest.raises(DestinationRefusedError, match="CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS"):
        await client.send(batch(upsert("ada@example.com")), "key-0")


async def test_a_proxys_error_page_is_classified_by_its_status(connect: Connect) -> None:
    def gateway(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    client = connect(transport=httpx.MockTransport(gateway))

    with pytest.raises(DestinationUnavailableError, match="HTTP 502"):
        await client.send(batch(upsert("ada@example.com")), "key-0")


async def test_connection_failures_are_retryable(connect: Connect) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = connect(transport=httpx.MockTransport(down))

    with pytest.raises(DestinationUnavailableError):
        await client.preflight()


async def test_the_simulator_requires_a_bearer_token_and_a_developer_token(sim: Sim) -> None:
    async with httpx.AsyncClient(transport=sim.wire.inner, base_url="http://sim") as http:
        no_token = await http.post(f"{ROOT}/offlineUserDataJobs:create", json=job_body())
        no_developer_token = await http.post(
            f"{ROOT}/offlineUserDataJobs:create",
            json=job_body(),
            headers={"Authorization": "Bearer x"},
        )

    assert no_token.status_code == 401
    assert no_token.json()["error"]["status"] == "UNAUTHENTICATED"
    assert no_developer_token.status_code == 400
    assert errors_of(no_developer_token) == [{"requestError": "DEVELOPER_TOKEN_PARAMETER_MISSING"}]


# -- credentials and registration ------------------------------------------------------------


def test_credentials_fall_back_to_placeholders_only_in_development() -> None:
    name = "GOOGLE_ADS_ACCESS_TOKEN"

    assert (
        resolve_credential(name, DEV_ACCESS_TOKEN, "token", "development", {}) == DEV_ACCESS_TOKEN
    )
    with pytest.raises(DestinationConfigError, match="is not set"):
        resolve_credential(name, DEV_ACCESS_TOKEN, "token", "production", {})
    with pytest.raises(DestinationConfigError, match="placeholder"):
        resolve_credential(
            name, DEV_DEVELOPER_TOKEN, "token", "production", {name: DEV_DEVELOPER_TOKEN}
        )


def test_customer_ids_may_be_written_with_dashes() -> None:
    assert config(customer_id="123-456-7890").customer_id == "1234567890"


async def test_the_registry_builds_the_client_and_simulator() -> None:
    spec = registry.spec_for("google_ads")
    app = registry.simulator_app("google_ads")
    dest = destination().model_copy(update={"config": spec.example_config("http://sim")})
    client = registry.create_client(dest, "ads_sync", RateLimiter(None), "development", {})
    try:
        assert isinstance(client, GoogleAdsClient)
        assert isinstance(app, Starlette)
    finally:
        await client.aclose()


# -- helpers ---------------------------------------------------------------------------------


def job_body() -> dict[str, Any]:
    return {
        "job": {
            "type": "CUSTOMER_MATCH_USER_LIST",
            "customerMatchUserListMetadata": {"userList": LIST},
        }
    }


def authed(sim: Sim) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=sim.wire.inner,
        base_url="http://sim",
        headers={"Authorization": "Bearer t", "developer-token": "d"},
    )


def errors_of(response: httpx.Response) -> list[Any]:
    return [e["errorCode"] for d in response.json()["error"]["details"] for e in d["errors"]]
