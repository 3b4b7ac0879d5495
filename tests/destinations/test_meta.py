"""Meta Custom Audiences: the client against the simulator (in-process, and mounted under a
prefix as the hub serves it), the simulator's own answers, and Meta's official Python SDK
pointed at the simulator over real HTTP.

State is read back through `/_sim/records`, keyed by the hash Meta received, so each test
checks what a person looks like on Meta's side, not just what the client said it sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from switchyard.catalog.models import Contract, Destination, FieldMapping, Identifier, TraitType
from switchyard.delivery.ratelimit import RateLimiter
from switchyard.destinations import registry
from switchyard.destinations.meta.client import (
    MetaAudienceClient,
    ReplaceSession,
    parse_usage,
    resolve_token,
)
from switchyard.destinations.meta.simulator import create_app
from switchyard.destinations.meta.spec import DEV_META_ACCESS_TOKEN, SPEC, MetaConfig
from switchyard.errors import (
    DestinationConfigError,
    DestinationRefusedError,
    DestinationUnavailableError,
    RateLimitedError,
)
from switchyard.identity.normalise import hash_email, hash_name_for_meta, sha256_hex
from switchyard.simulators.control import FaultConfig
from switchyard.simulators.server import run_in_thread
from tests.destinations.support import (
    RecordingLimiter,
    SimControl,
    batch,
    connector,
    remove,
    upsert,
)

TOKEN = "EAAB-test-token"
ENV = {"META_ACCESS_TOKEN": TOKEN}
AUDIENCE = "23850000000000042"
SIM = "http://graph.sim"
# Follow-up requests a batch may spend finding invalid rows Meta did not name.
PROBES = MetaConfig(audience_id="1").attribution_requests
MULTI_KEY_FIELDS = [
    FieldMapping(name="phone", source="phone", type=TraitType.PHONE),
    FieldMapping(name="fn", source="first_name"),
    FieldMapping(name="ln", source="last_name"),
]


def email_hash(email: str) -> str:
    value = hash_email(email)
    assert value is not None
    return value


def destination(
    base_url: str = SIM,
    identifier: str = "email",
    fields: list[FieldMapping] | None = None,
    **config: Any,
) -> Destination:
    kind = TraitType.EMAIL if identifier == "email" else TraitType.PHONE
    return Destination(
        name="meta_buyers",
        owner="growth",
        config=MetaConfig(base_url=base_url, audience_id=AUDIENCE, **config),
        contract=Contract(
            version=1,
            identifier=Identifier(name=identifier, source=identifier, type=kind),
            fields=fields or [],
            batch_size=10_000,
        ),
    )


def emails(n: int, start: int = 0) -> list[str]:
    return [f"person{i}@example.com" for i in range(start, start + n)]


class Sim(SimControl):
    """The simulator in-process (optionally mounted under a prefix) and its control API."""

    def __init__(self, prefix: str = "", **options: Any) -> None:
        app = create_app(**options)
        served = Starlette(routes=[Mount(prefix, app=app)]) if prefix else app
        self.base_url = SIM + prefix
        super().__init__(served, self.base_url)


Connect = Callable[..., MetaAudienceClient]


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    simulator = Sim(access_token=TOKEN)
    yield simulator
    await simulator.aclose()


@pytest.fixture
async def connect(sim: Sim) -> AsyncIterator[Connect]:
    async with connector(
        MetaAudienceClient,
        "meta_sync",
        default_destination=lambda: destination(sim.base_url),
        default_env=ENV,
        default_transport=sim.transport,
    ) as make:
        yield make


# -- membership round trips ------------------------------------------------------------------


async def test_upserts_join_the_audience_as_hashes_and_removes_leave_it(
    sim: Sim, connect: Connect
) -> None:
    client = connect()
    people = emails(5)
    outcome = await client.send(batch(*(upsert(e) for e in people)), "b-1")
    assert outcome.accepted == 5 and not outcome.rejections

    records = await sim.records()
    assert set(records) == {email_hash(e) for e in people}
    assert records[email_hash(people[0])]["EMAIL"] == email_hash(people[0])
    assert "person0@example.com" not in orjson.dumps(records).decode()  # never in clear

    outcome = await client.send(batch(remove(people[0]), remove(people[1])), "b-2")
    assert outcome.accepted == 2
    assert set(await sim.records()) == {email_hash(e) for e in people[2:]}


async def test_a_resent_batch_and_a_repeated_remove_change_nothing(
    sim: Sim, connect: Connect
) -> None:
    client = connect()
    same = batch(*(upsert(e) for e in emails(4)))
    await client.send(same, "b-1")
    state = await sim.records()
    await client.send(same, "b-1")
    assert await sim.records() == state

    gone = batch(remove("person0@example.com"))
    await client.send(gone, "b-2")
    after_remove = await sim.records()
    assert (await client.send(gone, "b-2")).accepted == 1
    assert await sim.records() == after_remove and len(after_remove) == 3


async def test_the_key_is_normalised_before_hashing(sim: Sim, connect: Connect) -> None:
    await connect().send(batch(upsert("  Person7@Example.COM\n")), "b-1")
    assert set(await sim.records()) == {email_hash("person7@example.com")}


async def test_extra_match_keys_go_in_a_multi_key_schema(sim: Sim, connect: Connect) -> None:
    client = connect(destination(sim.base_url, fields=MULTI_KEY_FIELDS))
    assert client.schema == ["EMAIL", "PHONE", "FN", "LN"]
    outcome = await client.send(
        batch(
            upsert("mary@example.com", phone="+1 (650) 555-1212", fn="Mary", ln="O'Brien"),
            upsert("valery@example.com", fn="Valéry"),  # no phone, no last name
        ),
        "b-1",
    )
    assert outcome.accepted == 2

    records = await sim.records()
    mary = records[email_hash("mary@example.com")]
    assert mary["schema"] == ["EMAIL", "PHONE", "FN", "LN"]
    # Meta's own documented hash of 16505551212: digits with country code, no "+".
    assert mary["PHONE"] == "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
    assert mary["PHONE"] != sha256_hex("+16505551212")
    assert mary["FN"] == hash_name_for_meta("mary") and mary["LN"] == sha256_hex("obrien")
    valery = records[email_hash("valery@example.com")]
    assert set(valery) == {"schema", "EMAIL", "FN"}
    assert valery["FN"] == "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"


async def test_a_phone_identifier_is_hashed_the_meta_way(sim: Sim, connect: Connect) -> None:
    client = connect(destination(sim.base_url, identifier="phone", default_phone_region="GB"))
    outcome = await client.send(batch(upsert("+16505551212"), upsert("020 7031 3000")), "b-1")
    assert outcome.accepted == 2
    assert set(await sim.records()) == {sha256_hex("16505551212"), sha256_hex("442070313000")}


async def test_a_mixed_batch_adds_and_removes_in_one_send(sim: Sim, connect: Connect) -> None:
    client = connect()
    await client.send(batch(*(upsert(e) for e in emails(3))), "b-1")
    outcome = await client.send(
        batch(upsert("new@example.com"), remove("person0@example.com")), "b-2"
    )
    assert outcome.accepted == 2
    expected = {email_hash(e) for e in [*emails(2, start=1), "new@example.com"]}
    assert set(await sim.records()) == expected
    assert (await sim.stats())["status_counts"] == {"200": 3}


# -- rejections ------------------------------------------------------------------------------


async def test_identifiers_that_do_not_normalise_are_rejected_without_being_sent(
    sim: Sim, connect: Connect
) -> None:
    outcome = await connect().send(batch(upsert("not-an-email"), upsert("ok@example.com")), "b")
    assert outcome.accepted == 1
    assert outcome.rejections == [("not-an-email", "not a valid email: cannot be matched")]
    assert (await sim.stats())["records_received"] == 1


async def test_rows_meta_names_as_invalid_come_back_with_its_reason(
    sim: Sim, connect: Connect
) -> None:
    people = emails(6)
    await sim.configure(reject_keys=[email_hash(people[2])])
    outcome = await connect().send(batch(*(upsert(e) for e in people)), "b-1")
    assert outcome.accepted == 5
    [(key, reason)] = outcome.rejections
    assert key == people[2] and reason.startswith("Meta: ") and "matching rules" in reason
    assert email_hash(people[2]) not in await sim.records()


async def test_invalid_rows_meta_counts_but_does_not_name_are_found_by_resending_halves(
    connect: Connect,
) -> None:
    # Meta names one invalid row per answer here; the client must locate the other three.
    stingy = Sim(access_token=TOKEN, max_samples=1)
    people = emails(16)
    bad = [people[1], people[6], people[13], people[14]]
    await stingy.configure(reject_keys=[email_hash(e) for e in bad])
    client = connect(transport=stingy.transport)
    outcome = await client.send(batch(*(upsert(e) for e in people)), "b-1")
    assert sorted(key for key, _ in outcome.rejections) == sorted(bad)
    assert all(reason.startswith("Meta: ") for _, reason in outcome.rejections)
    assert outcome.accepted == 12
    stats = await stingy.stats()
    assert 1 < stats["requests"] <= 1 + PROBES
    assert set(await stingy.records()) == {email_hash(e) for e in people if e not in bad}
    await stingy.aclose()


async def test_without_resends_unnamed_invalid_rows_are_rejected_as_a_group_saying_so(
    connect: Connect,
) -> None:
    stingy = Sim(access_token=TOKEN, max_samples=1)
    people = emails(8)
    await stingy.configure(reject_keys=[email_hash(people[0]), email_hash(people[5])])
    client = connect(
        destination(stingy.base_url, attribution_requests=0), transport=stingy.transport
    )
    outcome = await client.send(batch(*(upsert(e) for e in people)), "b-1")
    reasons = dict(outcome.rejections)
    assert len(reasons) == 8  # the named one, and the seven Meta's count leaves in doubt
    named = [key for key, reason in reasons.items() if reason.startswith("Meta: ")]
    assert len(named) == 1 and named[0] in (people[0], people[5])
    doubtful = [reason for reason in reasons.values() if not reason.startswith("Meta: ")]
    assert len(doubtful) == 7 and all("1 invalid entries among these 7" in r for r in doubtful)
    assert outcome.accepted == 0
    assert (await stingy.stats())["requests"] == 1
    await stingy.aclose()


# -- errors and rate limits ------------------------------------------------------------------


async def test_a_forced_429_raises_with_retry_after_and_holds_the_limiter(
    sim: Sim, connect: Connect
) -> None:
    await sim.configure(force_status=[429], force_retry_after=1)
    limiter = RecordingLimiter()
    client = connect(limiter=limiter)
    with pytest.raises(RateLimitedError) as caught:
        await client.send(batch(upsert("a@example.com")), "b-1")
    assert caught.value.retry_after == 1 and limiter.holds == [1]
    assert (await client.send(batch(upsert("a@example.com")), "b-1")).accepted == 1
    assert (await sim.stats())["early_retries"] == 0


async def test_an_empty_bucket_answers_meta_80003_with_the_usage_header(
    sim: Sim, connect: Connect
) -> None:
    await sim.configure(rate_limit={"requests": 1, "per_seconds": 90})
    limiter = RecordingLimiter()
    client = connect(limiter=limiter)
    await client.send(batch(upsert("a@example.com")), "b-1")
    with pytest.raises(RateLimitedError, match="code 80003") as caught:
        await client.send(batch(upsert("b@example.com")), "b-2")
    # The simulator's seconds-precise Retry-After wins over the header's whole minutes.
    assert caught.value.retry_after == 90 and limiter.holds == [90]

    raw = await sim.control.post(
        f"/v26.0/{AUDIENCE}/users",
        data={"payload": '{"schema":"EMAIL_SHA256","data":[]}', "access_token": TOKEN},
    )
    assert raw.status_code == 400 and raw.json()["error"]["code"] == 80003
    usage = parse_usage(raw.headers["X-Business-Use-Case-Usage"])
    assert usage == (100.0, 120.0)  # 90 s rounds up to 2 minutes


def answering(status: int, body: Any, headers: dict[str, str]) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, json=body, headers=headers))


def usage_header(percent: int, regain_minutes: int) -> dict[str, str]:
    entry = {
        "type": "CUSTOM_AUDIENCE",
        "call_count": percent,
        "total_cputime": 10,
        "total_time": 10,
        "estimated_time_to_regain_access": regain_minutes,
    }
    return {"X-Business-Use-Case-Usage": orjson.dumps({"123": [entry]}).decode()}


async def test_a_throttle_without_retry_after_waits_the_regain_time_in_minutes(
    connect: Connect,
) -> None:
    limiter = RecordingLimiter()
    throttled = {"error": {"message": "too many calls", "type": "OAuthException", "code": 80003}}
    client = connect(limiter=limiter, transport=answering(400, throttled, usage_header(100, 3)))
    with pytest.raises(RateLimitedError) as caught:
        await client.send(batch(upsert("a@example.com")), "b-1")
    assert caught.value.retry_after == 180 and 180 in limiter.holds


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80003, 80004])
async def test_every_rate_limit_code_is_a_rate_limit(connect: Connect, code: int) -> None:
    body = {"error": {"message": "limit", "type": "OAuthException", "code": code}}
    client = connect(transport=answering(403, body, {}))
    with pytest.raises(RateLimitedError):
        await client.send(batch(upsert("a@example.com")), "b-1")


async def test_the_usage_header_feeds_the_limiter_after_every_answer(
    sim: Sim, connect: Connect
) -> None:
    await sim.configure(rate_limit={"requests": 4, "per_seconds": 60})
    limiter = RecordingLimiter()
    await connect(limiter=limiter).send(batch(upsert("a@example.com")), "b-1")
    assert limiter.observed == [(75, 0)]  # one of four calls spent: 25 % used

    spent = {"audience_id": AUDIENCE, "session_id": "1", "num_received": 1}
    limiter = RecordingLimiter()
    client = connect(limiter=limiter, transport=answering(200, spent, usage_header(100, 2)))
    assert (await client.send(batch(upsert("a@example.com")), "b-1")).accepted == 1
    assert limiter.observed == [(0, 120)] and limiter.holds == [120]


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_retryable(sim: Sim, connect: Connect, status: int) -> None:
    await sim.configure(force_status=[status])
    with pytest.raises(DestinationUnavailableError, match="code 2"):
        await connect().send(batch(upsert("a@example.com")), "b-1")


async def test_a_transient_error_in_a_400_is_retryable(connect: Connect) -> None:
    body = {"error": {"message": "try later", "code": 1, "is_transient": True}}
    with pytest.raises(DestinationUnavailableError):
        await connect(transport=answering(400, body, {})).send(batch(upsert("a@example.com")), "b")


@pytest.mark.parametrize(("status", "code"), [(401, 190), (403, 200), (400, 100)])
async def test_auth_permission_and_request_errors_are_fatal(
    sim: Sim, connect: Connect, status: int, code: int
) -> None:
    await sim.configure(force_status=[status])
    with pytest.raises(DestinationRefusedError, match=f"code {code}"):
        await connect().send(batch(upsert("a@example.com")), "b-1")


async def test_a_refused_token_is_fatal_and_names_the_variable_not_the_token(
    connect: Connect,
) -> None:
    client = connect(env={"META_ACCESS_TOKEN": "EAAB-someone-elses"})
    with pytest.raises(DestinationRefusedError, match=r"\$META_ACCESS_TOKEN") as caught:
        await client.send(batch(upsert("a@example.com")), "b-1")
    assert "code 190" in str(caught.value) and "someone-elses" not in str(caught.value)
    with pytest.raises(DestinationRefusedError, match="code 190"):
        await client.preflight()


async def test_preflight_reads_the_audience(connect: Connect) -> None:
    await connect().preflight()


async def test_a_200_that_is_not_an_upload_summary_is_retryable(connect: Connect) -> None:
    client = connect(transport=answering(200, {"num_received": 0}, {}))
    with pytest.raises(DestinationUnavailableError, match="received 0 of 1"):
        await client.send(batch(upsert("a@example.com")), "b-1")


# -- limits ----------------------------------------------------------------------------------


async def test_requests_hold_at_most_ten_thousand_rows(sim: Sim, connect: Connect) -> None:
    people = emails(10_001)
    outcome = await connect().send(batch(*(upsert(e) for e in people)), "b-1")
    assert outcome.accepted == 10_001
    stats = await sim.stats()
    assert stats["requests"] == 2 and stats["max_batch_records"] == 10_000
    assert len(await sim.records()) == 10_001


async def test_a_body_over_the_payload_limit_is_split(sim: Sim, connect: Connect) -> None:
    client = connect()
    client._max_bytes = 3_000  # room for about 40 email hashes (73 bytes each, encoded)
    outcome = await client.send(batch(*(upsert(e) for e in emails(100))), "b-1")
    assert outcome.accepted == 100
    stats = await sim.stats()
    assert stats["requests"] == 4 and 1_500 < stats["max_body_bytes"] <= 3_000
    assert len(await sim.records()) == 100


# -- the simulator's own answers -------------------------------------------------------------


def form(payload: Any, **extra: str) -> dict[str, str]:
    return {"payload": orjson.dumps(payload).decode(), "access_token": TOKEN, **extra}


async def test_the_payload_is_read_from_a_form_a_json_body_or_the_query(sim: Sim) -> None:
    url = f"/v26.0/{AUDIENCE}/users"
    a, b, c = (email_hash(e) for e in emails(3))
    as_form = await sim.control.post(url, data=form({"schema": "EMAIL_SHA256", "data": [a]}))
    as_json = await sim.control.post(
        url, json={"payload": {"schema": ["EMAIL"], "data": [[b]]}, "access_token": TOKEN}
    )
    in_query = await sim.control.post(url, params=form({"schema": "EMAIL_SHA256", "data": [c]}))
    for answer in (as_form, as_json, in_query):
        assert answer.status_code == 200, answer.text
        assert answer.json()["num_received"] == 1 and answer.json()["audience_id"] == AUDIENCE
    assert set(await sim.records()) == {a, b, c}

    removed = await sim.control.delete(url, params=form({"schema": "EMAIL_SHA256", "data": [a]}))
    assert removed.status_code == 200 and set(await sim.records()) == {b, c}


async def test_malformed_rows_are_counted_invalid_with_samples(sim: Sim) -> None:
    good = email_hash("good@example.com")
    rows = [[good, ""], ["NOT-A-HASH", ""], [good.upper(), ""], [good], ["", ""]]
    answer = await sim.control.post(
        f"/v26.0/{AUDIENCE}/users", data=form({"schema": ["EMAIL", "PHONE"], "data": rows})
    )
    body = answer.json()
    assert answer.status_code == 200
    assert (body["num_received"], body["num_invalid_entries"]) == (5, 4)
    assert "NOT-A-HASH" in body["invalid_entry_samples"]
    assert "64 lowercase hex" in body["invalid_entry_samples"]["NOT-A-HASH"]
    assert set(await sim.records()) == {good}


@pytest.mark.parametrize(
    "payload",
    [
        {"schema": "EMAIL", "data": []},
        {"schema": ["EMAIL", "EMAIL"], "data": []},
        {"schema": ["NICKNAME"], "data": []},
        {"schema": "EMAIL_SHA256", "data": "abc"},
        {"schema": ["EMAIL"], "data": ["abc"]},
        "not an object",
    ],
)
async def test_a_malformed_payload_is_a_400_invalid_parameter(sim: Sim, payload: Any) -> None:
    answer = await sim.control.post(f"/v26.0/{AUDIENCE}/users", data=form(payload))
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == 100 and error["type"] == "OAuthException" and error["fbtrace_id"]


async def test_more_than_ten_thousand_rows_is_refused_whole(sim: Sim) -> None:
    hashes = [sha256_hex(str(i)) for i in range(10_001)]
    answer = await sim.control.post(
        f"/v26.0/{AUDIENCE}/users", data=form({"schema": "EMAIL_SHA256", "data": hashes})
    )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == 100
    assert "10000" in answer.json()["error"]["message"]
    assert await sim.records() == {}


async def test_a_request_without_a_token_is_refused(sim: Sim) -> None:
    answer = await sim.control.post(
        f"/v26.0/{AUDIENCE}/users", data={"payload": '{"schema":"EMAIL_SHA256","data":[]}'}
    )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == 104
    bearer = await sim.control.get(
        f"/v26.0/{AUDIENCE}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert bearer.status_code == 200 and bearer.json()["id"] == AUDIENCE
    stats = await sim.stats()
    assert stats["status_counts"] == {"200": 1, "400": 1}


async def test_unknown_edges_and_objects_answer_graph_errors(sim: Sim) -> None:
    unknown_edge = await sim.control.post(f"/v26.0/{AUDIENCE}/friends", data=form({}))
    assert unknown_edge.json()["error"]["code"] == 2500
    not_an_id = await sim.control.post("/v26.0/act_abc/users", data=form({}))
    assert not_an_id.json()["error"]["error_subcode"] == 33


# -- replace sessions ------------------------------------------------------------------------


async def test_a_replace_session_swaps_the_members_when_its_last_batch_arrives(
    sim: Sim, connect: Connect
) -> None:
    client = connect()
    await client.send(batch(*(upsert(e) for e in emails(3))), "b-0")  # the old members
    kept, fresh = emails(1, start=2), emails(3, start=10)
    first = await client.replace(
        [upsert(e) for e in [*kept, *fresh[:2]]],
        ReplaceSession(session_id=99, batch_seq=1, last_batch_flag=False, estimated_num_total=4),
    )
    assert first.accepted == 3
    assert set(await sim.records()) == {email_hash(e) for e in emails(3)}  # not yet

    last = await client.replace(
        [upsert(fresh[2])], ReplaceSession(session_id=99, batch_seq=2, last_batch_flag=True)
    )
    assert last.accepted == 1
    assert set(await sim.records()) == {email_hash(e) for e in [*kept, *fresh]}


async def test_a_replace_batch_out_of_order_is_refused(sim: Sim, connect: Connect) -> None:
    client = connect()
    with pytest.raises(DestinationRefusedError, match="batch_seq 2 out of order"):
        await client.replace(
            [upsert("a@example.com")],
            ReplaceSession(session_id=5, batch_seq=2, last_batch_flag=True),
        )
    with pytest.raises(ValueError, match="upserts"):
        await client.replace([remove("a@example.com")], ReplaceSession(5, 1, True))


async def test_replace_rejections_name_meta_samples(sim: Sim, connect: Connect) -> None:
    await sim.configure(reject_keys=[email_hash("bad@example.com")])
    outcome = await connect().replace(
        [upsert("bad@example.com"), upsert("good@example.com")], ReplaceSession(7, 1, True)
    )
    assert [key for key, _ in outcome.rejections] == ["bad@example.com"]
    assert set(await sim.records()) == {email_hash("good@example.com")}


# -- configuration ---------------------------------------------------------------------------


def test_the_token_comes_from_the_named_variable_with_a_dev_placeholder() -> None:
    config = MetaConfig(audience_id=AUDIENCE, token_env="ADS_TOKEN")
    assert resolve_token(config, "production", {"ADS_TOKEN": "EAAB-real"}) == "EAAB-real"
    assert resolve_token(config, "development", {}) == DEV_META_ACCESS_TOKEN
    with pytest.raises(DestinationConfigError, match="ADS_TOKEN"):
        resolve_token(config, "production", {})
    with pytest.raises(DestinationConfigError, match="placeholder"):
        resolve_token(config, "production", {"ADS_TOKEN": DEV_META_ACCESS_TOKEN})


def test_fields_that_are_not_match_keys_are_refused(connect: Connect) -> None:
    with pytest.raises(DestinationConfigError, match="plan"):
        connect(destination(fields=[FieldMapping(name="plan", source="plan")]))


def test_the_spec_is_registered_with_metas_limits() -> None:
    assert registry.spec_for("meta") is SPEC
    assert SPEC.max_batch_size == 10_000 and SPEC.set_if_empty is False
    assert SPEC.identifiers == {"email", "phone"}
    config = SPEC.example_config("http://hub/meta")
    assert isinstance(config, MetaConfig) and config.base_url == "http://hub/meta"


async def test_the_client_works_with_the_simulator_mounted_under_a_prefix(
    connect: Connect,
) -> None:
    hub = Sim(prefix="/meta", access_token=TOKEN)
    client = connect(destination(hub.base_url), transport=hub.transport)
    await client.preflight()
    assert (await client.send(batch(upsert("a@example.com")), "b-1")).accepted == 1
    assert set(await hub.records()) == {email_hash("a@example.com")}
    await hub.aclose()


def test_the_registry_builds_client_and_simulator() -> None:
    assert registry.simulator_app("meta", fault=FaultConfig()) is not None
    dest = destination()
    client = registry.create_client(dest, "s", RateLimiter(None), "development", {})
    assert isinstance(client, MetaAudienceClient)


# -- Meta's official SDK against the simulator -----------------------------------------------


@pytest.fixture
def graph(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    """The simulator over real HTTP, and an SDK API object pointed at it (no `init()`: it
    would switch on the SDK's crash reporter, which posts out)."""
    from facebook_business.api import FacebookAdsApi
    from facebook_business.session import FacebookSession

    with run_in_thread(create_app(access_token=TOKEN)) as base_url:
        monkeypatch.setattr(FacebookSession, "GRAPH", base_url)
        api = FacebookAdsApi(FacebookSession(access_token=TOKEN), api_version="v26.0")
        yield base_url, api


def test_the_official_sdk_adds_and_removes_pre_hashed_users(graph: tuple[str, Any]) -> None:
    from facebook_business.adobjects.customaudience import CustomAudience

    base_url, api = graph
    audience = CustomAudience(AUDIENCE, api=api)
    people = [email_hash(e) for e in emails(4)]
    added = audience.add_users(CustomAudience.Schema.email_hash, people, pre_hashed=True)
    assert added.json()["num_received"] == 4 and added.json()["num_invalid_entries"] == 0

    phone = sha256_hex("16505551212")
    multi = audience.add_users(
        [CustomAudience.Schema.MultiKeySchema.email, CustomAudience.Schema.MultiKeySchema.phone],
        [[email_hash("multi@example.com"), phone]],
        is_raw=True,
        pre_hashed=True,
    )
    assert multi.json()["num_received"] == 1

    # remove_users sends the payload in the query string: a small batch.
    removed = audience.remove_users(CustomAudience.Schema.email_hash, people[:2], pre_hashed=True)
    assert removed.json()["num_received"] == 2

    records = httpx.get(f"{base_url}/_sim/records", timeout=5).json()["records"]
    assert set(records) == {*people[2:], email_hash("multi@example.com")}
    assert records[email_hash("multi@example.com")]["PHONE"] == phone


def test_the_official_sdk_sees_a_throttle_as_a_request_error(graph: tuple[str, Any]) -> None:
    from facebook_business.adobjects.customaudience import CustomAudience
    from facebook_business.exceptions import FacebookRequestError

    base_url, api = graph
    httpx.put(f"{base_url}/_sim/config", json={"force_status": [429]}, timeout=5)
    audience = CustomAudience(AUDIENCE, api=api)
    with pytest.raises(FacebookRequestError) as caught:
        audience.add_users(CustomAudience.Schema.email_hash, [sha256_hex("x")], pre_hashed=True)
    assert caught.value.api_error_code() == 80003
    assert caught.value.api_error_type() == "OAuthException"
