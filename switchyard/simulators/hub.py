"""Every registered destination's simulator behind one port, as `switchyard dev` runs them.

Each simulator serves its vendor's paths under `/<kind>` (HubSpot at `/hubspot/crm/v3/...`,
Braze at `/braze/users/track`, ...), so a destination's `base_url` in a catalog is the hub's
URL plus its kind. The webhook receiver is also served at the root, where its
`/hooks/{name}` URLs have always been.

Run it: python -m switchyard.simulators.hub --host 127.0.0.1 --port 8787
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


def create_app() -> Starlette:
    routes: list[BaseRoute] = [
        Mount(f"/{kind}", app=registry.simulator_app(kind))
        for kind, spec in sorted(registry.SPECS.items())
        if spec.simulator is not None
    ]
    routes.append(Mount("", app=registry.simulator_app("webhook")))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Mounted apps' own lifespans do not run; keep the simulators' state out of the
        # collector's sight here instead (a million held records make full collections slow).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()

    return Starlette(routes=routes, lifespan=lifespan)


def main(argv: list[str] | None = None) -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m switchyard.simulators.hub",
        description="Every destination simulator on one port: /<kind>/... (webhook also at /).",
    )
    parser.add_argument("--host", default=settings.simulator_host)
    parser.add_argument("--port", type=int, default=settings.simulator_port)
    args = parser.parse_args(argv)
    serve(create_app(), args.host, args.port)


if __name__ == "__main__":
    main()
