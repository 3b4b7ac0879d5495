"""Every registered destination's simulator behind one port, as `switchyard dev` runs them.

Each simulator serves its vendor's paths under `/<kind>` (HubSpot at `/hubspot/crm/v3/...`,
Braze at `/braze/users/track`, ...), so a destination's `base_url` in a catalog is the hub's
URL plus its kind. The webhook receiver is also served at the root, where its
`/hooks/{name}` URLs have always been.

Run it: python -m switchyard.simulators.hub --host 127.0.0.1 --port 8787
        python -m switchyard.simulators.hub --only hubspot --port 8788   (one, at the root)
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from switchyard.destinations import registry
from switchyard.settings import Settings
from switchyard.simulators.server import serve


def create_app(only: str | None = None) -> Starlette:
    """Every simulator under `/<kind>`, or just `only`'s, served at the root."""
    if only is not None:
        routes: list[BaseRoute] = [Mount("", app=registry.simulator_app(only))]
        return Starlette(routes=routes, lifespan=_frozen_gc)
    routes = [
        Mount(f"/{kind}", app=registry.simulator_app(kind))
        for kind, spec in sorted(registry.SPECS.items())
        if spec.simulator is not None
    ]
    routes.append(Mount("", app=registry.simulator_app("webhook")))
    return Starlette(routes=routes, lifespan=_frozen_gc)


@asynccontextmanager
async def _frozen_gc(app: Starlette) -> AsyncIterator[None]:
    # Mounted apps' own lifespans do not run; keep the simulators' state out of the
    # collector's sight here instead (a million held records make full collections slow).
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def main(argv: list[str] | None = None) -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m switchyard.simulators.hub",
        description="Every destination simulator on one port: /<kind>/... (webhook also at /).",
    )
    parser.add_argument("--host", default=settings.simulator_host)
    parser.add_argument("--port", type=int, default=settings.simulator_port)
    parser.add_argument(
        "--only", choices=sorted(registry.SPECS), help="serve just this destination's simulator"
    )
    args = parser.parse_args(argv)
    serve(create_app(args.only), args.host, args.port)


if __name__ == "__main__":
    main()
