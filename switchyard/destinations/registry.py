"""Every destination, registered in one place: kind → its spec (and through it, its
config model, client and simulator).

Adding a destination means a folder `switchyard/destinations/<name>/` with `spec.py`,
the client and the simulator, and one line in `_SPECS` here; nothing else changes.
Clients and simulators are imported only when asked for, so loading a catalog stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from switchyard.destinations.braze.spec import SPEC as BRAZE
from switchyard.destinations.file_export.spec import SPEC as FILE_EXPORT
from switchyard.destinations.google_ads.spec import SPEC as GOOGLE_ADS
from switchyard.destinations.hubspot.spec import SPEC as HUBSPOT
from switchyard.destinations.klaviyo.spec import SPEC as KLAVIYO
from switchyard.destinations.meta.spec import SPEC as META
from switchyard.destinations.salesforce.spec import SPEC as SALESFORCE
from switchyard.destinations.spec import DestinationConfig, DestinationSpec
from switchyard.destinations.webhook.spec import SPEC as WEBHOOK
from switchyard.errors import DestinationConfigError

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from switchyard.catalog.models import Destination
    from switchyard.delivery.ratelimit import RateLimiter
    from switchyard.destinations.base import DestinationClient

_SPECS: tuple[DestinationSpec, ...] = (
    WEBHOOK,
    FILE_EXPORT,
    BRAZE,
    GOOGLE_ADS,
    HUBSPOT,
    KLAVIYO,
    META,
    SALESFORCE,
)

SPECS: dict[str, DestinationSpec] = {spec.kind: spec for spec in _SPECS}

ClientFactory = Callable[
    ["Destination", str, "RateLimiter", str, "Mapping[str, str] | None"], "DestinationClient"
]


def config_types() -> tuple[type[DestinationConfig], ...]:
    return tuple(spec.config for spec in _SPECS)


def spec_for(kind: str) -> DestinationSpec:
    try:
        return SPECS[kind]
    except KeyError:
        known = ", ".join(sorted(SPECS))
        raise DestinationConfigError(
            f"destination kind {kind!r} is not registered (known: {known})"
        ) from None


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def create_client(
    destination: Destination,
    sync: str,
    limiter: RateLimiter,
    environment: str = "development",
    env: Mapping[str, str] | None = None,
) -> DestinationClient:
    factory = cast(ClientFactory, _load(spec_for(destination.kind).client))
    return factory(destination, sync, limiter, environment, env)


def simulator_app(kind: str, **options: Any) -> ASGIApp:
    """The kind's local simulator as an ASGI app (its vendor paths served at the root)."""
    target = spec_for(kind).simulator
    if target is None:
        raise DestinationConfigError(f"destination kind {kind!r} has no simulator")
    return cast("ASGIApp", _load(target)(**options))
