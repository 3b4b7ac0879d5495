"""The generic webhook: signed JSON batches of operations to a URL the customer runs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from switchyard.destinations.spec import Capability, Category, DestinationConfig, DestinationSpec


class WebhookConfig(DestinationConfig):
    kind: Literal["webhook"] = "webhook"
    url: str = Field(pattern=r"^https?://")
    # Name of the environment variable holding the HMAC secret: never the secret itself.
    secret_env: str = Field(default="SWITCHYARD_WEBHOOK_SECRET", pattern=r"^[A-Z_][A-Z0-9_]*$")
    timeout_seconds: float = Field(default=30, gt=0)


SPEC = DestinationSpec(
    kind="webhook",
    title="Webhook (signed JSON)",
    category=Category.WEBHOOK,
    config=WebhookConfig,
    identifiers=frozenset(),
    max_batch_size=10_000,
    max_payload_bytes=5 * 1024 * 1024,
    rate_limit=None,
    operations=frozenset({Capability.UPSERT, Capability.REMOVE}),
    membership="a record per key at the receiver; `remove` deletes it",
    set_if_empty=True,
    client="switchyard.destinations.webhook.client:WebhookClient",
    simulator="switchyard.destinations.webhook.simulator:create_app",
    example_config=lambda base_url: WebhookConfig(url=f"{base_url}/hooks/contract"),
    max_field_chars=1000,
)
