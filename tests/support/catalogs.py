"""Catalog objects for tests, built in code so each test states the contract it relies on."""

from __future__ import annotations

from typing import Any

from switchyard.catalog.models import (
    Audience,
    Contract,
    Destination,
    FieldMapping,
    Identifier,
    Sync,
    SyncPlan,
    Trait,
    TraitType,
)
from switchyard.destinations.webhook.spec import WebhookConfig


def webhook_plan(
    url: str = "http://127.0.0.1:8787/hooks/crm",
    sql: str = "SELECT * FROM profiles WHERE lifetime_value >= 500 AND NOT is_employee",
    sync: str = "test_sync",
    **contract: Any,
) -> SyncPlan:
    fields = contract.pop(
        "fields",
        [
            FieldMapping(name="first_name", source="first_name", max_length=20),
            FieldMapping(name="phone", source="phone", type=TraitType.PHONE),
            FieldMapping(name="plan", source="plan", required=True),
            FieldMapping(name="lifetime_value", source="lifetime_value", type=TraitType.NUMBER),
            FieldMapping(name="last_order_at", source="last_order_at", type=TraitType.TIMESTAMP),
        ],
    )
    settings: dict[str, Any] = {
        "version": 1,
        "identifier": Identifier(name="email", source="email", type=TraitType.EMAIL),
        "fields": fields,
        "consent_purpose": "email_marketing",
        "batch_size": 3,
        **contract,
    }
    destination = Destination(
        name="crm_webhook",
        owner="crm-team",
        config=WebhookConfig(url=url),
        contract=Contract(**settings),
    )
    return SyncPlan(
        sync=Sync(name=sync, audience="high_value", destination="crm_webhook"),
        audience=Audience(name="high_value", version=1, owner="marketing", sql=sql),
        destination=destination,
        traits={
            name: Trait(name=name, type=TraitType.STRING, owner="test")
            for name in ("profile_id", "email", "phone", "first_name", "plan")
        },
    )
