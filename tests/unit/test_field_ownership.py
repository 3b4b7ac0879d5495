"""Field ownership from the contract: destination-owned fields, `send_nulls`, `write: if_empty`,
and contracts checked against what the destination's spec can do."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from switchyard.catalog.models import FieldMapping, TraitType, WriteRule
from switchyard.destinations.webhook.simulator import apply_operations
from tests.support.catalogs import webhook_plan
from tests.support.fakes import FakeDestination
from tests.support.pipeline import run_once
from tests.support.warehouse import MakeWarehouse, profile

FIELDS = [
    FieldMapping(name="first_name", source="first_name", send_nulls=False),
    FieldMapping(name="phone", source="phone", type=TraitType.PHONE),
    FieldMapping(name="plan", source="plan", required=True),
    FieldMapping(name="crm_id", source="first_name", owner="destination"),
]


async def test_nulls_are_left_out_only_for_fields_that_say_so(
    make_warehouse: MakeWarehouse,
) -> None:
    rows = [profile(1, first_name=None, phone=None), profile(2)]
    warehouse = make_warehouse(rows)
    dest = FakeDestination()
    await run_once(warehouse, webhook_plan(fields=FIELDS), dest, "run-1")

    # first_name (send_nulls: false) is absent when null; phone (default) is sent as null;
    # crm_id belongs to the destination and is never sent.
    assert dest.records["user1@example.com"] == {"phone": None, "plan": "pro"}
    assert dest.records["user2@example.com"] == {
        "first_name": "Ada",
        "phone": "+14155550100",
        "plan": "pro",
    }


def test_if_empty_fields_never_overwrite_a_value_the_receiver_holds() -> None:
    records: dict[str, dict[str, object]] = {"a@x.io": {"owner": "Sam", "plan": "free"}}
    ops = [
        {
            "op": "upsert",
            "key": "a@x.io",
            "fields": {"owner": "Bot", "plan": "pro"},
            "if_empty": ["owner"],
        },
        {
            "op": "upsert",
            "key": "b@x.io",
            "fields": {"owner": "Bot", "plan": "pro"},
            "if_empty": ["owner"],
        },
    ]
    apply_operations(records, ops)
    assert records["a@x.io"] == {"owner": "Sam", "plan": "pro"}
    assert records["b@x.io"] == {"owner": "Bot", "plan": "pro"}


def test_webhook_body_names_the_if_empty_fields() -> None:
    import orjson

    from switchyard.destinations.webhook.client import render_body
    from switchyard.pipeline.checkpoints import Batch, Operation

    batch = Batch(
        0,
        0,
        [Operation("upsert", "a@x.io", '{"owner":"Bot"}'), Operation("remove", "b@x.io", None)],
    )
    body = orjson.loads(render_body(batch, "k", "s", 1, ("owner",)))
    assert body["operations"][0]["if_empty"] == ["owner"]
    assert "if_empty" not in body["operations"][1]


def test_a_contract_cannot_ask_for_more_than_the_destination_allows() -> None:
    with pytest.raises(ValidationError, match=r"above .* limit of 10000 records per request"):
        webhook_plan(batch_size=10_001)


def test_write_rule_is_checked_against_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from switchyard.destinations import registry

    fields = [FieldMapping(name="owner", source="first_name", write=WriteRule.IF_EMPTY)]
    webhook_plan(fields=fields)  # the webhook can honour it
    monkeypatch.setitem(
        registry.SPECS, "webhook", replace(registry.SPECS["webhook"], set_if_empty=False)
    )
    with pytest.raises(ValidationError, match="write: if_empty"):
        webhook_plan(fields=fields)


async def test_text_longer_than_the_destination_stores_is_dropped_before_sending(
    make_warehouse: MakeWarehouse,
) -> None:
    # No max_length in the contract: the webhook's spec stores at most 1,000 characters.
    fields = [
        FieldMapping(name="first_name", source="first_name"),
        FieldMapping(name="plan", source="plan", required=True),
    ]
    warehouse = make_warehouse([profile(1, first_name="x" * 1001), profile(2, first_name="Ada")])
    dest = FakeDestination()
    checked, _, _ = await run_once(warehouse, webhook_plan(fields=fields), dest, "run-1")
    assert checked.fields_dropped == {"too_long:first_name": 1}
    assert dest.records["user1@example.com"] == {"first_name": None, "plan": "pro"}
    assert dest.records["user2@example.com"]["first_name"] == "Ada"
