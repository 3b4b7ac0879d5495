"""Batches the warehouse renders for the destination (the webhook's operations, in SQL)
carry exactly the body Python would have built, on both engines."""

from __future__ import annotations

import orjson

from switchyard.delivery.engine import deliver_chunk
from switchyard.destinations.base import BatchOutcome
from switchyard.destinations.webhook.client import item_sql, render_body
from switchyard.pipeline.checkpoints import Batch, read_chunk, read_rendered_chunk
from switchyard.warehouse.base import Dialect
from tests.support.catalogs import webhook_plan
from tests.support.fakes import FakeDestination
from tests.support.pipeline import plan_run, run_once
from tests.support.warehouse import MakeWarehouse, profile

AWKWARD = ['Ada "the" Count', "back\\slash", "Zoë 北京", "tab\tand\nnewline", None]


def rows() -> list[tuple[object, ...]]:
    return [profile(i, first_name=AWKWARD[i % len(AWKWARD)]) for i in range(11)]


async def test_rendered_batches_make_the_same_bodies_as_python(
    make_warehouse: MakeWarehouse,
) -> None:
    warehouse = make_warehouse(rows())
    plan = webhook_plan()
    # A first run delivered, then some leave: the second run has upserts and removes.
    await run_once(warehouse, plan, FakeDestination(), "run-1")
    with warehouse.session() as s:
        s.execute(
            "UPDATE profiles SET lifetime_value = 1 WHERE profile_id IN ('prf_0001', 'prf_0004')"
        )
        s.execute("UPDATE profiles SET plan = 'team' WHERE profile_id = 'prf_0002'")
    run, *_ = plan_run(warehouse, plan, "run-2", chunk_size=10)
    with warehouse.session() as s:
        plain = read_chunk(s, run, 0)
        rendered = read_rendered_chunk(s, run, 0, item_sql(s.dialect, ("phone",)))

    assert [b.number for b in rendered] == [b.number for b in plain]
    ops = {o.op for b in plain for o in b.operations}
    assert ops == {"upsert", "remove"}
    for python, warehouse_made in zip(plain, rendered, strict=True):
        assert warehouse_made.keys == [o.key for o in python.operations]
        assert warehouse_made.size == python.size
        expected = orjson.loads(render_body(python, "k", "s", 1, ("phone",)))
        assert orjson.loads(render_body(warehouse_made, "k", "s", 1, ("phone",))) == expected


class RenderingDestination:
    """Renders its items in the warehouse, as the webhook does; sends nothing, keeps batches."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def item_sql(self, dialect: Dialect) -> str:
        return item_sql(dialect)

    async def preflight(self) -> None:
        return None

    async def send(self, batch: Batch, idempotency_key: str) -> BatchOutcome:
        self.batches.append(batch)
        return BatchOutcome(accepted=batch.size)

    async def aclose(self) -> None:
        return None


async def test_the_engine_reads_rendered_batches_for_destinations_that_render_in_sql(
    make_warehouse: MakeWarehouse,
) -> None:
    warehouse = make_warehouse(rows())
    run, *_ = plan_run(warehouse, webhook_plan(), "run-1", chunk_size=20)
    dest = RenderingDestination()
    result = await deliver_chunk(warehouse, dest, run, 0)
    assert (result.sent, result.accepted) == (11, 11)
    assert all(b.rendered is not None and not b.operations for b in dest.batches)
    assert [b.size for b in dest.batches] == [3, 3, 3, 2]
