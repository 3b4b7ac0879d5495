"""The destination contract suite: every registered destination, against its own simulator,
through the same code that talks to the real API.

For each destination it proves: batches never exceed its limits; a 429 storm completes
with no request sent before its Retry-After; rejected rows come back with the
destination's reason, are recorded, and are sent again on the next run; re-sending a batch
after a crash leaves the destination's state unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from switchyard.catalog.models import (
    Audience,
    Contract,
    Destination,
    FieldMapping,
    Identifier,
    Sync,
    SyncMode,
    SyncPlan,
    Trait,
    TraitType,
)
from switchyard.delivery.ratelimit import RateLimiter
from switchyard.destinations import registry
from switchyard.destinations.base import DestinationClient
from switchyard.destinations.spec import Capability, Category, DestinationSpec
from switchyard.errors import RateLimitedError
from switchyard.pipeline.checkpoints import Batch, Operation
from switchyard.simulators.server import run_in_thread
from tests.support.pipeline import run_once
from tests.support.warehouse import MakeWarehouse, profile

KINDS = sorted(registry.SPECS)
# Contract batches stay small enough to seed quickly, yet span several requests.
MOST_PER_BATCH = 200


@dataclass
class Served:
    kind: str
    spec: DestinationSpec
    base_url: str

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.base_url}{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def configure(self, **patch: Any) -> None:
        self.control("PUT", "/_sim/config", patch)

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.control("GET", "/_sim/stats")
        return result

    def records(self) -> dict[str, Any]:
        result: dict[str, Any] = self.control("GET", "/_sim/records")["records"]
        return result


@pytest.fixture(params=KINDS)
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    kind = str(request.param)
    with run_in_thread(registry.simulator_app(kind)) as base_url:
        yield Served(kind, registry.SPECS[kind], base_url)


def identifier_for(spec: DestinationSpec) -> Identifier:
    """Match on email where the destination can; else on its first identifier, by profile id."""
    if not spec.identifiers or "email" in spec.identifiers:
        return Identifier(name="email", source="email", type=TraitType.EMAIL)
    emailish = sorted(n for n in spec.identifiers if "email" in n.lower())
    if emailish:
        return Identifier(name=emailish[0], source="email", type=TraitType.EMAIL)
    return Identifier(name=sorted(spec.identifiers)[0], source="profile_id")


def destination_for(served: Served, batch_size: int | None = None) -> Destination:
    spec = served.spec
    fields = []
    if spec.category is not Category.PAID_MEDIA:
        fields = [
            FieldMapping(name="first_name", source="first_name"),
            FieldMapping(name="plan", source="plan", required=True),
        ]
    mirror = Capability.REMOVE in spec.operations
    return Destination(
        name=f"contract_{served.kind}",
        owner="test",
        config=spec.example_config(served.base_url),
        contract=Contract(
            version=1,
            identifier=identifier_for(spec),
            fields=fields,
            sync_mode=SyncMode.MIRROR if mirror else SyncMode.UPSERT,
            batch_size=batch_size or min(spec.max_batch_size, MOST_PER_BATCH),
            consent_purpose="email_marketing",
        ),
    )


def plan_for(destination: Destination) -> SyncPlan:
    return SyncPlan(
        sync=Sync(name="contract_sync", audience="everyone", destination=destination.name),
        audience=Audience(name="everyone", version=1, owner="test", sql="SELECT * FROM profiles"),
        destination=destination,
        traits={
            name: Trait(name=name, type=TraitType.STRING, owner="test")
            for name in ("profile_id", "email", "phone", "first_name", "plan")
        },
    )


def client_for(destination: Destination, limiter: RateLimiter | None = None) -> DestinationClient:
    return registry.create_client(
        destination, "contract_sync", limiter or RateLimiter(None), "development", {}
    )


def rows(destination: Destination, n: int) -> Batch:
    """A batch of upserts keyed as the destination's identifier expects."""
    by_email = destination.contract.identifier.source == "email"
    operations = [
        Operation(
            "upsert",
            f"user{i}@example.com" if by_email else f"prf_{i:04d}",
            '{"first_name":"Ada","plan":"pro"}',
        )
        for i in range(n)
    ]
    return Batch(chunk=0, number=0, operations=operations, run_id="contract-run")


def test_a_contract_asking_for_bigger_batches_than_the_destination_takes_is_refused(
    served: Served,
) -> None:
    with pytest.raises(ValidationError, match="records per request"):
        destination_for(served, batch_size=served.spec.max_batch_size + 1)


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
async def test_batches_never_exceed_the_destinations_limits(
    served: Served, make_warehouse: MakeWarehouse
) -> None:
    destination = destination_for(served)
    batch_size = destination.contract.batch_size
    warehouse = make_warehouse([profile(i) for i in range(2 * batch_size + 1)])
    client = client_for(destination)
    try:
        _, _, changes = await run_once(
            warehouse, plan_for(destination), client, "run-1", chunk_size=4 * batch_size
        )
    finally:
        await client.aclose()
    stats = served.stats()
    assert changes.added == 2 * batch_size + 1
    assert 0 < stats["max_batch_records"] <= batch_size <= served.spec.max_batch_size
    assert 0 < stats["max_body_bytes"] <= served.spec.max_payload_bytes
    assert len(served.records()) == 2 * batch_size + 1


async def test_a_429_storm_completes_without_a_request_before_its_retry_after(
    served: Served,
) -> None:
    destination = destination_for(served)
    served.configure(force_status=[429, 429, 429], force_retry_after=1)
    client = client_for(destination)
    batch = rows(destination, 5)
    refusals = []
    try:
        for _ in range(10):
            try:
                outcome = await client.send(batch, "storm-1")
                break
            except RateLimitedError as error:
                # Retried at once: the shared limiter, held by the client, must make it wait.
                refusals.append(error.retry_after)
        else:
            pytest.fail(f"still rate limited after {len(refusals)} attempts")
    finally:
        await client.aclose()
    assert len(refusals) == 3
    assert all(wait is not None and wait >= 1 for wait in refusals)
    assert outcome.accepted == 5
    stats = served.stats()
    assert stats["early_retries"] == 0


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
async def test_rejected_rows_are_recorded_with_reasons_and_sent_again_next_run(
    served: Served, make_warehouse: MakeWarehouse
) -> None:
    if served.spec.category is Category.FILES:
        pytest.skip("a file takes every row: there is no per-row rejection to record")
    destination = destination_for(served)
    warehouse = make_warehouse([profile(i) for i in range(30)])
    plan = plan_for(destination)
    served.configure(reject_rate=0.3, seed=7)
    client = client_for(destination)
    try:
        await run_once(warehouse, plan, client, "run-1")
        with warehouse.session() as s:
            errors = dict(s.fetchall("SELECT key, reason FROM switchyard.row_errors"))
        assert 0 < len(errors) < 30
        assert all(isinstance(reason, str) and reason for reason in errors.values())
        keys = {f"user{i}@example.com" for i in range(30)} | {f"prf_{i:04d}" for i in range(30)}
        assert set(errors) <= keys, "rejections must name our keys, not the destination's"

        served.configure(reject_rate=0.0)
        _, _, again = await run_once(warehouse, plan, client, "run-2")
    finally:
        await client.aclose()
    assert again.added == len(errors) and again.changed == 0
    with warehouse.session() as s:
        assert s.fetchall("SELECT * FROM switchyard.row_errors") == []


async def test_resending_a_batch_after_a_crash_leaves_the_destination_unchanged(
    served: Served,
) -> None:
    destination = destination_for(served)
    client = client_for(destination)
    batch = rows(destination, 12)
    try:
        first = await client.send(batch, "crash-1")
        state = served.records()
        # The worker died before checkpointing: the same batch goes again, same key.
        again = await client.send(batch, "crash-1")
    finally:
        await client.aclose()
    assert first.accepted == again.accepted == 12
    assert len(state) == 12
    assert served.records() == state
