"""Every destination kind, registered in one place: kind → client factory."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from switchyard.catalog.models import Destination
from switchyard.delivery.ratelimit import RateLimiter
from switchyard.destinations.base import DestinationClient
from switchyard.destinations.webhook.client import WebhookClient
from switchyard.errors import DestinationConfigError

ClientFactory = Callable[
    [Destination, str, RateLimiter, str, Mapping[str, str] | None], DestinationClient
]


def _webhook(
    destination: Destination,
    sync: str,
    limiter: RateLimiter,
    environment: str,
    env: Mapping[str, str] | None,
) -> DestinationClient:
    return WebhookClient(destination, sync, limiter, environment, env)


FACTORIES: dict[str, ClientFactory] = {"webhook": _webhook}


def create_client(
    destination: Destination,
    sync: str,
    limiter: RateLimiter,
    environment: str = "development",
    env: Mapping[str, str] | None = None,
) -> DestinationClient:
    try:
        factory = FACTORIES[destination.kind]
    except KeyError:
        known = ", ".join(sorted(FACTORIES))
        raise DestinationConfigError(
            f"destination kind {destination.kind!r} is not registered (known: {known})"
        ) from None
    return factory(destination, sync, limiter, environment, env)
