"""What the destination tests share: rows and batches, a simulator served in-process with
its control API, a limiter that remembers what a client told it, and clients closed when
the test ends.

Each test file keeps what is its destination's own: the catalog entry, the simulator's
vendor paths, the way its `connect` fixture builds a client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Generic, Protocol, TypeVar

import httpx
import orjson
from starlette.types import ASGIApp

from switchyard.catalog.models import Destination
from switchyard.delivery.ratelimit import RateLimiter
from switchyard.pipeline.checkpoints import Batch, Operation


def upsert(key: str, **fields: Any) -> Operation:
    return Operation("upsert", key, orjson.dumps(fields).decode())


def remove(key: str) -> Operation:
    return Operation("remove", key, None)


def batch(*operations: Operation, chunk: int = 0, number: int = 0, run_id: str = "") -> Batch:
    return Batch(chunk=chunk, number=number, operations=list(operations), run_id=run_id)


class SimControl:
    """A simulator app in-process: `transport` for the client under test, `control` for
    the control API every simulator serves (`/_sim/config`, `/_sim/records`, `/_sim/stats`)
    and for requests a test sends by hand."""

    def __init__(
        self, app: ASGIApp, base_url: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.app = app
        self.transport = httpx.ASGITransport(app=app)
        self.control = httpx.AsyncClient(
            transport=self.transport, base_url=base_url, headers=headers
        )

    async def configure(self, **patch: Any) -> None:
        response = await self.control.put("/_sim/config", json=patch)
        assert response.status_code == 200, response.text

    async def records(self) -> dict[str, Any]:
        answer: dict[str, Any] = (await self.control.get("/_sim/records")).json()
        if "count" in answer:
            assert answer["count"] == len(answer["records"])
        records: dict[str, Any] = answer["records"]
        return records

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = (await self.control.get("/_sim/stats")).json()
        return stats

    async def aclose(self) -> None:
        await self.control.aclose()


class RecordingLimiter(RateLimiter):
    """A real limiter (unless `waits` is off) that notes what the client told it."""

    def __init__(self, waits: bool = True) -> None:
        super().__init__(None)
        self._waits = waits
        self.acquired = 0
        self.holds: list[float] = []
        self.observed: list[tuple[int | None, float | None]] = []

    async def acquire(self) -> None:
        self.acquired += 1
        if self._waits:
            await super().acquire()

    def hold_for(self, seconds: float) -> None:
        self.holds.append(seconds)
        if self._waits:
            super().hold_for(seconds)

    def observe(self, remaining: int | None, resets_in: float | None) -> None:
        self.observed.append((remaining, resets_in))
        if self._waits:
            super().observe(remaining, resets_in)


class Closes(Protocol):
    async def aclose(self) -> None: ...


C = TypeVar("C", bound=Closes)


class Opened(Generic[C]):
    """The clients a test opened, closed together when its fixture ends."""

    def __init__(self) -> None:
        self._clients: list[C] = []

    def keep(self, client: C) -> C:
        self._clients.append(client)
        return client

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


@asynccontextmanager
async def connector(
    client_class: Callable[..., C],
    sync: str,
    *,
    default_destination: Callable[[], Destination],
    default_env: Mapping[str, str] | None,
    default_transport: httpx.AsyncBaseTransport,
    default_limiter: Callable[[], RateLimiter] = lambda: RateLimiter(None),
) -> AsyncIterator[Callable[..., C]]:
    """A `connect` fixture's factory: clients built as the registry builds them, on the
    simulator's transport unless a test names another (`transport=None`: the network),
    all closed when the test ends."""
    opened: Opened[C] = Opened()

    def make(
        dest: Destination | None = None,
        limiter: RateLimiter | None = None,
        environment: str = "development",
        env: Mapping[str, str] | None = default_env,
        transport: httpx.AsyncBaseTransport | None = default_transport,
        **options: Any,
    ) -> C:
        client = client_class(
            dest or default_destination(),
            sync,
            limiter or default_limiter(),
            environment=environment,
            env=env,
            transport=transport,
            **options,
        )
        return opened.keep(client)

    try:
        yield make
    finally:
        await opened.aclose()
