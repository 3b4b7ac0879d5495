"""The production webhook client against the webhook simulator.

Mostly in-process (`httpx.ASGITransport`), a few over real HTTP to a uvicorn server on a
thread. What lands is read back through the simulator's control API, which only stores a
batch whose signature it verified.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import orjson
import pytest

from switchyard.catalog.models import Destination, RateLimit
from switchyard.delivery import ratelimit
from switchyard.delivery.ratelimit import RateLimiter, RateLimiters
from switchyard.delivery.retry_after import parse_retry_after
from switchyard.destinations.webhook import client as client_module
from switchyard.destinations.webhook.client import (
    WebhookClient,
    render_body,
    resolve_secret,
    sign,
)
from switchyard.destinations.webhook.simulator import SimulatorConfig, create_app
from switchyard.destinations.webhook.spec import WebhookConfig
from switchyard.errors import (
    DestinationConfigError,
    DestinationRefusedError,
    DestinationUnavailableError,
    FatalError,
    RateLimitedError,
    RetryableError,
)
from switchyard.pipeline.checkpoints import Batch, Operation
from switchyard.settings import DEV_WEBHOOK_SECRET
from switchyard.simulators.server import run_in_thread
from tests.destinations.support import SimControl, batch, connector, remove, upsert
from tests.support.catalogs import webhook_plan

SECRET = "crm-hook-secret-3f9a"
SECRET_ENV = "CRM_HOOK_SECRET"
ENV = {SECRET_ENV: SECRET}
SIM_URL = "http://sim/hooks/crm"


def destination(url: str = SIM_URL, timeout: float = 30, **contract: Any) -> Destination:
    config = WebhookConfig(url=url, secret_env=SECRET_ENV, timeout_seconds=timeout)
    return webhook_plan(url=url, **contract).destination.model_copy(update={"config": config})


class Simulator(SimControl):
    """The simulator in-process, and its control API (records and log per hook)."""

    def __init__(self, config: SimulatorConfig) -> None:
        super().__init__(create_app(config, freeze_gc=False), "http://sim")

    async def records(self, hook: str = "crm") -> dict[str, Any]:
        result: dict[str, Any] = (await self.control.get(f"/_sim/hooks/{hook}/records")).json()
        return result["records"]

    async def log(self, hook: str = "crm") -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = (await self.control.get(f"/_sim/hooks/{hook}/log")).json()
        return result


Connect = Callable[..., WebhookClient]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(SimulatorConfig(secret=SECRET))
    yield simulator
    await simulator.aclose()


@pytest.fixture
async def connect(sim: Simulator) -> AsyncIterator[Connect]:
    """Build clients of the in-process simulator (by default); closes them afterwards."""
    async with connector(
        WebhookClient,
        "test_sync",
        default_destination=destination,
        default_env=ENV,
        default_transport=sim.transport,
    ) as make:
        yield make


class FakeTime:
    """Fake clocks for the limiter (monotonic) and the client (wall), moved only by sleeping.

    The wall clock is the real one shifted by `wall_offset`, so the simulator, which reads
    the real wall clock, can judge the client's timestamps.
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self.wall_offset = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def time(self) -> float:
        return _real_time() + self.wall_offset

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.wall_offset += seconds
        await _real_sleep(0)


_real_time, _real_sleep = time.time, asyncio.sleep


class _AsyncioWithFakeSleep:
    def __init__(self, fake: FakeTime) -> None:
        self.sleep = fake.sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(ratelimit, "asyncio", _AsyncioWithFakeSleep(fake))
    monkeypatch.setattr(client_module, "time", fake)
    return fake


# -- the request -------------------------------------------------------------------------------


def test_the_body_embeds_the_warehouse_rendered_fields_verbatim() -> None:
    fields = '{"plan":"pro","lifetime_value":900.0}'
    body = render_body(
        batch(Operation("upsert", 'a"b@example.com', fields), remove("c@example.com")),
        "batch-key",
        "test_sync",
        3,
    )

    assert fields.encode() in body
    assert orjson.loads(body) == {
        "batch_id": "batch-key",
        "sync": "test_sync",
        "contract_version": 3,
        "operations": [
            {"op": "upsert", "key": 'a"b@example.com', "fields": orjson.loads(fields)},
            {"op": "remove", "key": "c@example.com"},
        ],
    }


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"k", b"1700000000." + b"{}", hashlib.sha256).hexdigest()

    assert sign(b"k", "1700000000", b"{}") == f"v1={expected}"


async def test_a_batch_lands_and_the_simulator_verifies_its_signature(
    sim: Simulator, connect: Connect
) -> None:
    client = connect()
    operations = (upsert("a@example.com", plan="pro"), upsert("b@example.com", plan="free"))
    await client.send(batch(*operations), "key-0")

    outcome = await client.send(
        batch(upsert("a@example.com", plan="enterprise"), remove("b@example.com"), number=1),
        "key-1",
    )

    assert (outcome.accepted, list(outcome.rejections)) == (2, [])
    assert await sim.records() == {"a@example.com": {"plan": "enterprise"}}
    log = [
        (e["batch_id"], e["idempotency_key"], e["operations"], e["status"]) for e in await sim.log()
    ]
    assert log == [("key-0", "key-0", 2, 200), ("key-1", "key-1", 2, 200)]


async def test_per_item_rejections_carry_the_simulators_reasons(
    sim: Simulator, connect: Connect
) -> None:
    await sim.configure(reject_keys=["b@example.com"], reject_reason="blocked", max_field_chars=10)
    operations = [
        upsert("a@example.com", first_name="Ada"),
        upsert("b@example.com", first_name="Bob"),
        upsert("c@example.com", first_name="Bartholomew-Maximilian"),
        remove("d@example.com"),
    ]

    outcome = await connect().send(batch(*operations), "key-0")

    assert outcome.accepted == 2
    assert list(outcome.rejections) == [
        ("b@example.com", "blocked"),
        ("c@example.com", "field_too_long:first_name"),
    ]
    assert await sim.records() == {"a@example.com": {"first_name": "Ada"}}


async def test_a_batch_resent_with_its_key_is_a_duplicate_and_not_reapplied(
    sim: Simulator, connect: Connect
) -> None:
    await sim.configure(reject_keys=["b@example.com"])
    client = connect()
    first_batch = batch(upsert("a@example.com", v=1), upsert("b@example.com", v=1))
    first = await client.send(first_batch, "key-0")
    await client.send(batch(upsert("a@example.com", v=2), number=1), "key-1")

    # As after a crash between the send and its checkpoint: the same batch, the same key.
    replay = await client.send(first_batch, "key-0")

    assert list(first.rejections) == [("b@example.com", "rejected_by_rule")]
    assert replay == first
    assert await sim.records() == {"a@example.com": {"v": 2}}
    stats = await sim.stats()
    assert (stats["batches_applied"], stats["duplicate_batches"]) == (2, 1)
    assert stats["idempotency_mismatches"] == 0


# -- rate limits ------------------------------------------------------------------------------


async def test_a_429_raises_with_its_retry_after_and_holds_the_limiter(
    sim: Simulator, connect: Connect, fake_time: FakeTime
) -> None:
    await sim.configure(force_status=[429], force_retry_after=3)
    limiter = RateLimiter(None, clock=fake_time)
    client, other = connect(limiter=limiter), connect(limiter=limiter)

    with pytest.raises(RateLimitedError) as raised:
        await client.send(batch(upsert("a@example.com", v=1)), "key-0")

    assert isinstance(raised.value, RetryableError)
    assert raised.value.retry_after == 3.0
    assert fake_time.sleeps == []
    # Every sender sharing the destination's limiter waits out the Retry-After first.
    outcome = await other.send(batch(upsert("b@example.com", v=1), number=1), "key-1")
    assert fake_time.sleeps == [3.0]
    assert outcome.accepted == 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wednesday, 21-Oct-15 07:28:30 GMT", 30.0),
        ("Wed Oct 21 07:28:30 2015", 30.0),
        ("Wed, 21 Oct 2015 07:20:00 GMT", 0.0),
        ("soon", None),
        ("-1", None),
        ("1.5", None),
        ("\u00b2", None),
        ("\u0663", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_delay_seconds_or_an_http_date(
    header: str | None, expected: float | None
) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)

    assert parse_retry_after(header, now) == expected


async def test_an_http_date_retry_after_becomes_seconds_from_now(connect: Connect) -> None:
    when = datetime.now(UTC) + timedelta(seconds=90)

    def limited(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": format_datetime(when, usegmt=True)})

    client = connect(transport=httpx.MockTransport(limited))
    with pytest.raises(RateLimitedError) as raised:
        await client.send(batch(upsert("a@example.com", v=1)), "key-0")

    assert raised.value.retry_after is not None
    assert 60 < raised.value.retry_after <= 90


async def test_a_contract_rate_limit_keeps_a_burst_under_the_destinations_limit(
    sim: Simulator, connect: Connect
) -> None:
    limit = RateLimit(requests=20, per_seconds=1)
    await sim.configure(rate_limit=limit.model_dump())
    dest = destination(rate_limit=limit)
    limiter = RateLimiters().for_destination(dest.name, dest.contract.rate_limit)
    # Several concurrent chunks of one run share the destination's limiter.
    clients = [connect(dest, limiter) for _ in range(3)]

    outcomes = await asyncio.gather(
        *(
            clients[n % 3].send(batch(upsert(f"u{n}@example.com", n=n), number=n), f"key-{n}")
            for n in range(30)
        )
    )

    assert [o.accepted for o in outcomes] == [1] * 30
    stats = await sim.stats()
    assert stats["status_counts"] == {"200": 30}
    assert stats["early_retries"] == 0
    assert len(await sim.records()) == 30


async def test_without_the_contract_limit_the_same_burst_is_rate_limited(
    sim: Simulator, connect: Connect
) -> None:
    await sim.configure(rate_limit={"requests": 20, "per_seconds": 1})
    client = connect()

    results = await asyncio.gather(
        *(
            client.send(batch(upsert(f"u{n}@example.com", n=n), number=n), f"key-{n}")
            for n in range(30)
        ),
        return_exceptions=True,
    )

    limited = [r for r in results if isinstance(r, RateLimitedError)]
    assert limited and all(r.retry_after is not None and r.retry_after >= 1 for r in limited)


async def test_a_batch_that_waited_for_the_limiter_is_signed_when_it_leaves(
    connect: Connect, fake_time: FakeTime
) -> None:
    # Queued behind a long Retry-After: the simulator allows timestamps 300 s off its clock.
    limiter = RateLimiter(None, clock=fake_time)
    fake_time.wall_offset = -400
    limiter.hold_for(400)

    outcome = await connect(limiter=limiter).send(batch(upsert("a@example.com", v=1)), "key-0")

    assert fake_time.sleeps == [400]
    assert outcome.accepted == 1


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_retryable(sim: Simulator, connect: Connect, status: int) -> None:
    await sim.configure(force_status=[status])

    with pytest.raises(DestinationUnavailableError) as raised:
        await connect().send(batch(upsert("a@example.com", v=1)), "key-0")

    assert isinstance(raised.value, RetryableError)
    assert f"HTTP {status}" in str(raised.value)
    assert await sim.records() == {}


async def test_an_outage_is_retryable_after_the_announced_delay(
    sim: Simulator, connect: Connect
) -> None:
    await sim.configure(outage=True)

    with pytest.raises(DestinationUnavailableError) as raised:
        await connect().send(batch(upsert("a@example.com", v=1)), "key-0")

    assert raised.value.retry_after == 1.0


async def test_a_wrong_secret_is_fatal_and_names_the_variable_not_the_secret(
    sim: Simulator, connect: Connect
) -> None:
    wrong = "wrong-secret-77c1"
    client = connect(env={SECRET_ENV: wrong})

    with pytest.raises(DestinationRefusedError) as raised:
        await client.send(batch(upsert("a@example.com", v=1)), "key-0")

    error = raised.value
    assert isinstance(error, FatalError) and not isinstance(error, RetryableError)
    assert error.status == 401
    assert SECRET_ENV in str(error)
    for secret in (wrong, SECRET):
        assert secret not in str(error) and secret not in repr(error)
    assert await sim.records() == {}


@pytest.mark.parametrize(
    ("patch", "status", "reason"),
    [
        ({"max_batch_size": 2}, 400, "batch_too_large"),
        ({"max_body_bytes": 64}, 413, "payload_too_large"),
        ({"force_status": [400]}, 400, "bad_request"),
        ({"force_status": [422]}, 422, "unprocessable_entity"),
    ],
)
async def test_a_refused_request_is_fatal(
    sim: Simulator, connect: Connect, patch: dict[str, Any], status: int, reason: str
) -> None:
    await sim.configure(**patch)
    operations = [upsert(f"u{n}@example.com", n=n) for n in range(3)]

    with pytest.raises(DestinationRefusedError) as raised:
        await connect().send(batch(*operations), "key-0")

    assert not isinstance(raised.value, RetryableError)
    assert raised.value.status == status
    assert reason in str(raised.value)


async def test_preflight_of_a_closed_port_says_unreachable(connect: Connect) -> None:
    # Bound but not listening: connections are refused, and no one else can take the port.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/hooks/crm"
        client = connect(destination(url), transport=None)

        with pytest.raises(DestinationUnavailableError, match="unreachable"):
            await client.preflight()
        with pytest.raises(DestinationUnavailableError):
            await client.send(batch(upsert("a@example.com", v=1)), "key-0")


# -- secrets ----------------------------------------------------------------------------------


async def test_production_refuses_to_start_without_the_secret(
    connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The mapping given is the whole environment: the process's own variables don't leak in.
    monkeypatch.setenv(SECRET_ENV, "from-the-process")

    for env in ({}, {"OTHER": "x"}, {SECRET_ENV: ""}):
        with pytest.raises(DestinationConfigError, match=SECRET_ENV):
            connect(environment="production", env=env)


async def test_development_falls_back_to_the_dev_secret(connect: Connect) -> None:
    dev = Simulator(SimulatorConfig(secret=DEV_WEBHOOK_SECRET))
    try:
        client = connect(env={}, transport=dev.transport)
        outcome = await client.send(batch(upsert("a@example.com", v=1)), "key-0")
    finally:
        await dev.aclose()

    assert outcome.accepted == 1


# -- over real HTTP -----------------------------------------------------------------------------


@pytest.fixture
def served() -> Iterator[str]:
    with run_in_thread(create_app(SimulatorConfig(secret=SECRET), freeze_gc=False)) as url:
        yield url


async def test_over_http_preflight_passes_and_batches_land(served: str, connect: Connect) -> None:
    client = connect(destination(f"{served}/hooks/crm"), transport=None)

    await client.preflight()
    for n in range(3):
        await client.send(batch(upsert(f"u{n}@example.com", n=n), number=n), f"key-{n}")
    await client.aclose()

    async with httpx.AsyncClient(base_url=served) as control:
        records = (await control.get("/_sim/hooks/crm/records")).json()["records"]
    assert records == {f"u{n}@example.com": {"n": n} for n in range(3)}


async def test_a_request_that_times_out_is_retryable(connect: Connect) -> None:
    config = SimulatorConfig(secret=SECRET, timeout_rate=1.0, timeout_seconds=30)
    with run_in_thread(create_app(config, freeze_gc=False)) as url:
        client = connect(destination(f"{url}/hooks/crm", timeout=0.2), transport=None)

        with pytest.raises(DestinationUnavailableError, match="timed out") as raised:
            await client.send(batch(upsert("a@example.com", v=1)), "key-0")
        await client.aclose()

    assert isinstance(raised.value.__cause__, httpx.TimeoutException)


def test_the_development_placeholder_secret_is_refused_outside_development() -> None:
    config = WebhookConfig(url="http://127.0.0.1:1/hooks/crm", secret_env="HOOK_SECRET")
    env = {"HOOK_SECRET": DEV_WEBHOOK_SECRET}
    assert resolve_secret(config, "development", env) == DEV_WEBHOOK_SECRET.encode()
    with pytest.raises(DestinationConfigError, match="placeholder"):
        resolve_secret(config, "production", env)


async def test_a_200_that_is_not_json_is_retryable() -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, text="<html>bad gateway</html>"))
    client = WebhookClient(
        webhook_plan().destination, "test_sync", RateLimiter(None), transport=transport
    )
    batch = Batch(0, 0, [Operation("upsert", "a@example.com", "{}")])
    with pytest.raises(DestinationUnavailableError, match="not JSON"):
        await client.send(batch, "key-1")
    await client.aclose()
