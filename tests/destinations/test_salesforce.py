"""The Salesforce client against the Salesforce simulator, and simple-salesforce against it too.

Mostly in-process (`httpx.ASGITransport`); the official SDK and the mounted-under-a-prefix
case go over real HTTP to uvicorn on a thread. What lands is read back through the
simulator's control API (`/_sim/records`, `/_sim/stats`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import requests
from simple_salesforce.api import Salesforce
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
from switchyard.destinations.salesforce import bulk
from switchyard.destinations.salesforce.api import parse_api_usage, resolve_token
from switchyard.destinations.salesforce.client import SalesforceClient
from switchyard.destinations.salesforce.collections import id_queries, soql_literal, upsert_bodies
from switchyard.destinations.salesforce.org import parse_soql
from switchyard.destinations.salesforce.simulator import create_app
from switchyard.destinations.salesforce.spec import (
    DEV_SALESFORCE_TOKEN,
    SPEC,
    SalesforceConfig,
)
from switchyard.errors import (
    DestinationConfigError,
    DestinationRefusedError,
    DestinationUnavailableError,
    RateLimitedError,
)
from switchyard.pipeline.checkpoints import Operation
from switchyard.simulators.control import FaultConfig
from switchyard.simulators.server import run_in_thread
from tests.destinations.support import Opened, SimControl, batch, remove, upsert
from tests.support.limiter_time import FakeTime, fake_limiter_time

TOKEN = "00Dxx0000001gPF!test-session"
TOKEN_ENV = "SF_TEST_TOKEN"
ENV = {TOKEN_ENV: TOKEN}
SIM = "http://sim"
DATA = "/services/data/v60.0"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def destination(instance_url: str = SIM, **config: Any) -> Destination:
    settings: dict[str, Any] = {
        "instance_url": instance_url,
        "sobject": "Contact",
        "external_id_field": "Email",
        "token_env": TOKEN_ENV,
        "poll_interval_seconds": 0.01,
        "poll_max_interval_seconds": 0.02,
        "job_timeout_seconds": 5,
        "limit_hold_seconds": 7,
        **config,
    }
    contract = Contract(
        version=1,
        identifier=Identifier(name="Email", source="email", type=TraitType.EMAIL),
        fields=[
            FieldMapping(name="FirstName", source="first_name"),
            FieldMapping(name="LastName", source="last_name"),
            FieldMapping(name="Plan__c", source="plan", send_nulls=False),
        ],
        batch_size=1000,
    )
    return Destination(
        name="crm_salesforce",
        owner="crm-team",
        config=SalesforceConfig(**settings),
        contract=contract,
    )


def people(count: int, start: int = 0) -> list[Operation]:
    return [
        upsert(f"p{n}@example.com", LastName=f"Person {n}") for n in range(start, start + count)
    ]


class Simulator(SimControl):
    def __init__(self, config: FaultConfig | None = None) -> None:
        super().__init__(create_app(config, access_token=TOKEN), SIM)


Connect = Callable[..., SalesforceClient]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator()
    yield simulator
    await simulator.aclose()


@pytest.fixture
async def connect(sim: Simulator) -> AsyncIterator[Connect]:
    opened: Opened[SalesforceClient] = Opened()

    def make(
        limiter: RateLimiter | None = None,
        environment: str = "development",
        env: dict[str, str] | None = ENV,
        transport: httpx.AsyncBaseTransport | None = sim.transport,
        **config: Any,
    ) -> SalesforceClient:
        client = SalesforceClient(
            destination(**config),
            "test_sync",
            limiter or RateLimiter(None),
            environment=environment,
            env=env,
            transport=transport,
        )
        return opened.keep(client)

    yield make
    await opened.aclose()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    return fake_limiter_time(monkeypatch)


# -- sObject Collections -----------------------------------------------------------------------


def test_collection_bodies_embed_the_rendered_fields_and_hold_200_records() -> None:
    fields = '{"FirstName":"Ada","Plan__c":null}'
    operations = [Operation("upsert", "ada@example.com", fields), *people(250)]

    bodies = list(upsert_bodies("Contact", "Email", operations, max_bytes=10_000_000))

    assert [len(chunk) for chunk, _ in bodies] == [200, 51]
    first = orjson.loads(bodies[0][1])
    assert first["allOrNone"] is False
    assert first["records"][0] == {
        "attributes": {"type": "Contact"},
        "Email": "ada@example.com",
        "FirstName": "Ada",
        "Plan__c": None,
    }
    assert b'"Email":"ada@example.com","FirstName":"Ada","Plan__c":null}' in bodies[0][1]
    small = list(upsert_bodies("Contact", "Email", people(10), max_bytes=400))
    assert all(len(body) <= 400 for _, body in small)
    assert sum(len(chunk) for chunk, _ in small) == 10


async def test_upserts_land_with_ids_and_a_resend_changes_nothing(
    sim: Simulator, connect: Connect
) -> None:
    client = connect()
    first = batch(
        upsert("ada@example.com", FirstName="Ada", LastName="Lovelace"),
        upsert("bob@example.com", LastName="Babbage", Plan__c="pro"),
    )
    outcome = await client.send(first, "key-0")
    assert (outcome.accepted, list(outcome.rejections)) == (2, [])
    landed = await sim.records()

    assert landed["ada@example.com"]["LastName"] == "Lovelace"
    assert landed["bob@example.com"]["Plan__c"] == "pro"
    assert len(landed["ada@example.com"]["Id"]) == 18
    assert landed["ada@example.com"]["Id"].startswith("003")

    again = await client.send(first, "key-0")
    assert again.accepted == 2
    assert await sim.records() == landed

    await client.send(batch(upsert("ada@example.com", FirstName="Augusta")), "key-1")
    changed = await sim.records()
    assert changed["ada@example.com"]["FirstName"] == "Augusta"
    assert changed["ada@example.com"]["Id"] == landed["ada@example.com"]["Id"]


async def test_a_big_batch_goes_out_in_requests_of_200(sim: Simulator, connect: Connect) -> None:
    outcome = await connect().send(batch(*people(450)), "key-0")

    stats = await sim.stats()
    assert outcome.accepted == 450
    assert stats["requests"] == 3
    assert stats["max_batch_records"] == 200
    assert len(await sim.records()) == 450


async def test_rejected_rows_carry_salesforce_status_code_and_message(
    sim: Simulator, connect: Connect
) -> None:
    await sim.configure(reject_keys=["bob@example.com"])
    too_long = "x" * 131_073
    operations = [
        upsert("ada@example.com", LastName="Lovelace"),
        upsert("bob@example.com", LastName="Babbage"),
        upsert("cy@example.com", LastName=too_long),
    ]

    outcome = await connect().send(batch(*operations), "key-0")

    assert outcome.accepted == 1
    reasons = dict(outcome.rejections)
    assert set(reasons) == {"bob@example.com", "cy@example.com"}
    assert reasons["bob@example.com"].startswith("FIELD_CUSTOM_VALIDATION_EXCEPTION: ")
    assert reasons["cy@example.com"].startswith("STRING_TOO_LONG: ")
    assert reasons["cy@example.com"].endswith("(fields: LastName)")
    assert list(await sim.records()) == ["ada@example.com"]


async def test_removes_find_ids_by_soql_and_delete_them(sim: Simulator, connect: Connect) -> None:
    client = connect()
    await client.send(batch(*people(3)), "key-0")

    outcome = await client.send(
        batch(
            remove("p1@example.com"), remove("never-there@example.com"), upsert("p9@example.com")
        ),
        "key-1",
    )

    assert (outcome.accepted, list(outcome.rejections)) == (3, [])
    assert sorted(await sim.records()) == ["p0@example.com", "p2@example.com", "p9@example.com"]
    # Removing again finds nothing to delete: still a success.
    replay = await client.send(batch(remove("p1@example.com")), "key-1")
    assert (replay.accepted, list(replay.rejections)) == (1, [])


async def test_a_refused_delete_is_that_rows_rejection(sim: Simulator, connect: Connect) -> None:
    client = connect()
    await client.send(batch(*people(2)), "key-0")
    await sim.configure(reject_keys=["p0@example.com"])

    outcome = await client.send(batch(remove("p0@example.com"), remove("p1@example.com")), "k")

    assert outcome.accepted == 1
    [(key, reason)] = outcome.rejections
    assert key == "p0@example.com"
    assert reason.startswith("DELETE_FAILED: ")
    assert list(await sim.records()) == ["p0@example.com"]


def test_id_queries_escape_keys_and_stay_within_the_uri_budget() -> None:
    assert soql_literal("o'brien\\x@example.com") == "'o\\'brien\\\\x@example.com'"
    keys = [
        f"someone.with.a.rather.long.address.{n}@subdomain.example-company.com" for n in range(600)
    ]

    queries = list(id_queries("Contact", "Email", keys))

    assert len(queries) > 3
    assert all(len(httpx.QueryParams({"q": q}).__str__()) < 12_000 for q in queries)
    values = [v for q in queries for v in (parse_soql(q).values or [])]  # type: ignore[union-attr]
    assert values == keys
    odd = parse_soql(next(id_queries("Contact", "Email", ["o'brien\\x@example.com"])))
    assert odd is not None and odd.values == ["o'brien\\x@example.com"]


# -- Bulk API 2.0 ------------------------------------------------------------------------------


def test_bulk_csv_clears_nulls_and_leaves_unsent_fields_alone() -> None:
    header, rows = bulk.render_rows(
        "Email",
        [
            upsert("ada@example.com", FirstName="Ada", Plan__c=None, Active__c=True),
            upsert("bob@example.com", LastName='Bab"bage, C.', Score__c=1.5),
            upsert("cy@example.com", FirstName=""),
        ],
    )

    table = list(csv.reader(io.StringIO((header + b"".join(rows)).decode())))
    assert table == [
        ["Email", "FirstName", "Plan__c", "Active__c", "LastName", "Score__c"],
        ["ada@example.com", "Ada", "#N/A", "true", "", ""],
        ["bob@example.com", "", "", "", 'Bab"bage, C.', "1.5"],
        ["cy@example.com", "#N/A", "", "", "", ""],
    ]
    assert list(bulk.uploads(b"h\n", [b"12345\n"] * 5, max_bytes=20)) == [(0, 3), (3, 5)]


async def test_a_batch_at_the_threshold_goes_as_one_bulk_job(
    sim: Simulator, connect: Connect
) -> None:
    await sim.configure(job_polls=2, reject_keys=["p3@example.com"])
    client = connect(bulk_threshold=5)

    outcome = await client.send(batch(*people(5), remove("gone@example.com")), "key-0")

    assert outcome.accepted == 5
    [(key, reason)] = outcome.rejections
    assert key == "p3@example.com"
    assert reason.startswith("FIELD_CUSTOM_VALIDATION_EXCEPTION:")
    landed = await sim.records()
    assert sorted(landed) == [f"p{n}@example.com" for n in (0, 1, 2, 4)]
    assert landed["p0@example.com"]["LastName"] == "Person 0"
    stats = await sim.stats()
    # create, upload, close, 3 polls (2 in progress), failedResults; then the remove's query
    assert stats["requests"] == 8
    assert stats["max_batch_records"] == 5
    assert stats["status_counts"] == {"200": 7, "201": 1}


async def test_a_resent_bulk_batch_is_a_new_job_with_the_same_effect(
    sim: Simulator, connect: Connect
) -> None:
    client = connect(bulk_threshold=2)
    await client.send(batch(*people(4)), "key-0")
    before = await sim.records()

    await client.send(batch(*people(4)), "key-0")

    assert await sim.records() == before
    org = sim.app.state.simulator.org
    assert len(org.jobs) == 2
    assert [len(job.successful) for job in org.jobs.values()] == [4, 4]
    assert [row[1] for job in org.jobs.values() for row in job.successful] == ["true"] * 4 + [
        "false"
    ] * 4


async def test_csv_over_the_upload_limit_is_split_into_jobs(
    sim: Simulator, connect: Connect
) -> None:
    client = connect(bulk_threshold=2, max_upload_bytes=2048)
    operations = [upsert(f"p{n}@example.com", LastName="x" * 300) for n in range(12)]

    outcome = await client.send(batch(*operations), "key-0")

    stats = await sim.stats()
    assert outcome.accepted == 12
    assert len(sim.app.state.simulator.org.jobs) > 1
    assert stats["max_body_bytes"] <= 2048
    assert len(await sim.records()) == 12


async def test_a_job_that_does_not_finish_in_time_is_retryable(
    sim: Simulator, connect: Connect
) -> None:
    await sim.configure(job_polls=1000)
    client = connect(bulk_threshold=2, job_timeout_seconds=0.05)

    with pytest.raises(DestinationUnavailableError, match="still InProgress"):
        await client.send(batch(*people(3)), "key-0")


async def test_a_job_that_fails_on_its_upload_is_fatal_otherwise_retried() -> None:
    bad = {"state": "Failed", "errorMessage": "InvalidBatch : Field name not found : Foo__c"}
    with pytest.raises(DestinationRefusedError, match="InvalidBatch"):
        bulk.check_finished("crm", "750x", bad)
    with pytest.raises(DestinationUnavailableError, match="Aborted"):
        bulk.check_finished("crm", "750x", {"state": "Aborted"})
    bulk.check_finished("crm", "750x", {"state": "JobComplete"})


async def test_the_simulator_fails_a_job_whose_header_lacks_the_external_id(
    sim: Simulator,
) -> None:
    job = (
        await sim.control.post(
            f"{DATA}/jobs/ingest",
            headers=AUTH,
            json={"object": "Contact", "externalIdFieldName": "Email", "operation": "upsert"},
        )
    ).json()
    assert (job["state"], job["contentUrl"]) == (
        "Open",
        f"services/data/v60.0/jobs/ingest/{job['id']}/batches",
    )
    upload = await sim.control.put(
        f"{DATA}/jobs/ingest/{job['id']}/batches",
        headers={**AUTH, "Content-Type": "text/csv"},
        content=b"LastName\nLovelace\n",
    )
    assert upload.status_code == 201
    closed = await sim.control.patch(
        f"{DATA}/jobs/ingest/{job['id']}", headers=AUTH, json={"state": "UploadComplete"}
    )
    assert closed.json()["state"] == "Failed"
    assert closed.json()["errorMessage"].startswith("InvalidBatch")


# -- errors, limits and the limiter -------------------------------------------------------------


async def test_a_forced_429_is_rate_limiting_with_retry_after_and_holds_the_limiter(
    sim: Simulator, connect: Connect, clock: FakeTime
) -> None:
    await sim.configure(force_status=[429], force_retry_after=1)
    limiter = RateLimiter(None, clock=clock)

    with pytest.raises(RateLimitedError) as caught:
        await connect(limiter=limiter).send(batch(*people(2)), "key-0")

    assert caught.value.retry_after == 1
    assert "REQUEST_LIMIT_EXCEEDED" in str(caught.value)
    await limiter.acquire()
    assert clock.sleeps == [1]


async def test_over_the_limit_salesforce_answers_403_and_that_is_rate_limiting(
    sim: Simulator, connect: Connect, clock: FakeTime
) -> None:
    await sim.configure(rate_limit={"requests": 1, "per_seconds": 60})
    limiter = RateLimiter(None, clock=clock)
    client = connect(limiter=limiter)
    await client.send(batch(*people(1)), "key-0")

    with pytest.raises(RateLimitedError) as caught:
        await client.send(batch(*people(2, start=1)), "key-1")

    assert caught.value.retry_after == 60
    stats = await sim.stats()
    assert stats["status_counts"] == {"200": 1, "403": 1}


async def test_a_403_limit_without_retry_after_waits_limit_hold_seconds(
    connect: Connect, clock: FakeTime
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}]
        return httpx.Response(403, json=body)

    limiter = RateLimiter(None, clock=clock)
    client = connect(limiter=limiter, transport=httpx.MockTransport(handler))

    with pytest.raises(RateLimitedError) as caught:
        await client.send(batch(*people(1)), "key-0")

    assert caught.value.retry_after == 7
    await limiter.acquire()
    assert clock.sleeps == [7]


async def test_spent_api_usage_holds_every_sender_before_the_next_request(
    sim: Simulator, connect: Connect, clock: FakeTime
) -> None:
    await sim.configure(rate_limit={"requests": 2, "per_seconds": 3600})
    limiter = RateLimiter(None, clock=clock)
    client = connect(limiter=limiter)

    await client.send(batch(*people(1)), "key-0")
    assert clock.sleeps == []
    await client.send(batch(*people(2, start=1)), "key-1")  # api-usage=2/2 after this one

    await limiter.acquire()
    assert clock.sleeps == [7]


def test_api_usage_is_read_from_sforce_limit_info() -> None:
    assert parse_api_usage("api-usage=18/5000") == (18, 5000)
    assert parse_api_usage("api-usage=25/5000; per-app-api-usage=17/250(appName=x)") == (
        25,
        5000,
    )
    assert parse_api_usage("per-app-api-usage=17/250(appName=x)") is None
    assert parse_api_usage(None) is None


async def test_every_answer_reports_api_usage(sim: Simulator) -> None:
    await sim.control.get(f"{DATA}/limits", headers=AUTH)
    response = await sim.control.get(f"{DATA}/limits", headers=AUTH)

    assert response.headers["Sforce-Limit-Info"] == "api-usage=2/5000000"
    assert response.json()["DailyApiRequests"] == {"Max": 5_000_000, "Remaining": 4_999_998}


@pytest.mark.parametrize(
    ("patch", "error", "retry_after"),
    [
        ({"force_status": [500]}, DestinationUnavailableError, None),
        ({"force_status": [503]}, DestinationUnavailableError, None),
        ({"outage": True}, DestinationUnavailableError, 1),
        ({"force_status": [403]}, DestinationRefusedError, None),
        ({"force_status": [401]}, DestinationRefusedError, None),
    ],
)
async def test_errors_are_classified(
    sim: Simulator,
    connect: Connect,
    patch: dict[str, Any],
    error: type[Exception],
    retry_after: float | None,
) -> None:
    await sim.configure(**patch)

    with pytest.raises(error) as caught:
        await connect().send(batch(*people(1)), "key-0")

    assert getattr(caught.value, "retry_after", None) == retry_after


async def test_a_refused_token_is_fatal_and_names_the_variable(connect: Connect) -> None:
    client = connect(env={TOKEN_ENV: "expired"})

    with pytest.raises(DestinationRefusedError, match=f"INVALID_SESSION_ID.*{TOKEN_ENV}") as caught:
        await client.preflight()
    assert caught.value.status == 401
    await connect().preflight()


def test_the_token_comes_from_the_named_variable() -> None:
    config = destination().config
    assert isinstance(config, SalesforceConfig)
    assert resolve_token(config, "production", ENV) == TOKEN
    assert resolve_token(config, "development", {}) == DEV_SALESFORCE_TOKEN
    with pytest.raises(DestinationConfigError, match=TOKEN_ENV):
        resolve_token(config, "production", {})
    with pytest.raises(DestinationConfigError, match="placeholder"):
        resolve_token(config, "production", {TOKEN_ENV: DEV_SALESFORCE_TOKEN})


async def test_the_simulator_speaks_salesforces_errors(sim: Simulator) -> None:
    path = f"{DATA}/composite/sobjects/Contact/Email"
    record = {"attributes": {"type": "Contact"}, "Email": "a@example.com"}

    too_many = await sim.control.patch(path, headers=AUTH, json={"records": [record] * 201})
    no_token = await sim.control.patch(path, json={"records": [record]})
    untyped = await sim.control.patch(path, headers=AUTH, json={"records": [{"Email": "x"}]})
    no_key = await sim.control.patch(
        path, headers=AUTH, json={"records": [{"attributes": {"type": "Contact"}}]}
    )
    bad_soql = await sim.control.get(f"{DATA}/query", headers=AUTH, params={"q": "SELEC Id"})

    assert too_many.status_code == 400
    assert too_many.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert no_token.status_code == 401
    assert no_token.json() == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]
    assert (untyped.status_code, untyped.json()[0]["errorCode"]) == (400, "INVALID_TYPE")
    assert no_key.status_code == 200
    assert no_key.json()[0]["errors"][0]["statusCode"] == "MISSING_ARGUMENT"
    assert (bad_soql.status_code, bad_soql.json()[0]["errorCode"]) == (400, "MALFORMED_QUERY")
    assert await sim.records() == {}


async def test_all_or_none_rolls_back_the_whole_request(sim: Simulator) -> None:
    await sim.configure(reject_keys=["b@example.com"])
    records = [
        {"attributes": {"type": "Contact"}, "Email": key}
        for key in ("a@example.com", "b@example.com")
    ]

    response = await sim.control.patch(
        f"{DATA}/composite/sobjects/Contact/Email",
        headers=AUTH,
        json={"allOrNone": True, "records": records},
    )

    codes = [item["errors"][0]["statusCode"] for item in response.json()]
    assert codes == ["ALL_OR_NONE_OPERATION_ROLLED_BACK", "FIELD_CUSTOM_VALIDATION_EXCEPTION"]
    assert await sim.records() == {}


async def test_query_pages_follow_next_records_url(sim: Simulator, connect: Connect) -> None:
    client = connect(bulk_threshold=1)
    await client.send(batch(*people(2500)), "key-0")

    first = (
        await sim.control.get(f"{DATA}/query", headers=AUTH, params={"q": "SELECT Id FROM Contact"})
    ).json()
    rest = (await sim.control.get(first["nextRecordsUrl"], headers=AUTH)).json()

    assert (first["totalSize"], first["done"], len(first["records"])) == (2500, False, 2000)
    assert (rest["done"], len(rest["records"])) == (True, 500)
    assert "nextRecordsUrl" not in rest


# -- the registry's view, over real HTTP, under a mount prefix -------------------------------------


@pytest.fixture(scope="module")
def mounted() -> Iterator[str]:
    """The simulator as the hub serves it: under /salesforce, on a real port."""
    app = Starlette(routes=[Mount("/salesforce", app=registry.simulator_app("salesforce"))])
    with run_in_thread(app, health_path="/salesforce/healthz") as base_url:
        yield base_url + "/salesforce"


async def test_the_registered_client_round_trips_through_a_mounted_simulator(
    mounted: str,
) -> None:
    config = SPEC.example_config(mounted)
    dest = destination().model_copy(update={"config": config})
    client = registry.create_client(dest, "test_sync", RateLimiter(None))
    try:
        await client.preflight()
        small = await client.send(batch(*people(3)), "key-0")
        assert isinstance(config, SalesforceConfig)
        big = await client.send(batch(*people(config.bulk_threshold + 1, start=3)), "key-1")
        removed = await client.send(batch(remove("p0@example.com")), "key-2")
    finally:
        await client.aclose()
    async with httpx.AsyncClient() as http:
        records = (await http.get(f"{mounted}/_sim/records")).json()

    assert (small.accepted, big.accepted, removed.accepted) == (3, config.bulk_threshold + 1, 1)
    assert records["count"] == config.bulk_threshold + 3
    assert "p0@example.com" not in records["records"]


# -- the official SDK (simple-salesforce) against the simulator ------------------------------------


class _ToSimulator(requests.adapters.HTTPAdapter):
    """simple-salesforce insists on https://host[:port] with no path: send it to the simulator."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        request.url = self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().send(request, **kwargs)


@pytest.fixture
def sdk(mounted: str) -> Iterator[Salesforce]:
    requests.post(f"{mounted}/_sim/reset", timeout=5)
    session = requests.Session()
    session.mount("https://", _ToSimulator(mounted))
    port = urlsplit(mounted).port
    yield Salesforce(instance_url=f"https://127.0.0.1:{port}", session_id=TOKEN, session=session)
    session.close()


def test_simple_salesforce_upserts_queries_and_collections(sdk: Salesforce, mounted: str) -> None:
    created = sdk.Contact.upsert("Email/ada@example.com", {"LastName": "Lovelace"})
    updated = sdk.Contact.upsert("Email/ada@example.com", {"FirstName": "Ada"})
    record = sdk.Contact.get_by_custom_id("Email", "ada@example.com")
    answer = sdk.restful(
        "composite/sobjects/Contact/Email",
        method="PATCH",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Contact"}, "Email": "bob@example.com", "LastName": "B"},
                {"attributes": {"type": "Contact"}, "Email": "ada@example.com", "Title": "Dr"},
            ],
        },
    )
    found = sdk.query("SELECT Id, Email FROM Contact WHERE Email IN ('ada@example.com')")

    assert (created, updated) == (201, 200)
    assert (record["FirstName"], record["LastName"]) == ("Ada", "Lovelace")
    assert [(item["success"], item["created"]) for item in answer] == [(True, True), (True, False)]
    assert found["totalSize"] == 1 and found["records"][0]["Id"] == record["Id"]
    assert sdk.api_usage["api-usage"].used == 5
    records = requests.get(f"{mounted}/_sim/records", timeout=5).json()["records"]
    assert records["ada@example.com"]["Title"] == "Dr"


def test_simple_salesforce_bulk2_upsert_reads_results(
    sdk: Salesforce, mounted: str, tmp_path: Path
) -> None:
    requests.put(
        f"{mounted}/_sim/config",
        json={"reject_keys": ["bob@example.com"], "job_polls": 1},
        timeout=5,
    )
    data = tmp_path / "contacts.csv"
    data.write_text(
        "Email,LastName\nada@example.com,Lovelace\nbob@example.com,Babbage\ncy@example.com,Y\n"
    )

    [result] = sdk.bulk2.Contact.upsert(csv_file=str(data), external_id_field="Email", wait=0)
    every = sdk.bulk2.Contact.get_all_ingest_records(result["job_id"])

    assert (result["numberRecordsProcessed"], result["numberRecordsFailed"]) == (3, 1)
    assert [row["Email"] for row in every["successfulRecords"]] == [
        "ada@example.com",
        "cy@example.com",
    ]
    [failed] = every["failedRecords"]
    assert failed["Email"] == "bob@example.com"
    assert failed["sf__Error"].startswith("FIELD_CUSTOM_VALIDATION_EXCEPTION")
    assert every["unprocessedRecords"] == []
    records = requests.get(f"{mounted}/_sim/records", timeout=5).json()["records"]
    assert sorted(records) == ["ada@example.com", "cy@example.com"]
