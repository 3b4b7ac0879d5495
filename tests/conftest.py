"""Shared fixtures: Temporal environments started from the pinned wheels, never downloaded;
a fresh warehouse on each engine."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.support.engines import ENGINES, fresh_warehouse

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent

pytest_plugins = ["tests.support.warehouse"]


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    yield env
    await env.shutdown()


@pytest.fixture(params=ENGINES)
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty warehouse of its own for each test, once per engine.

    A test bound to one engine says so with
    `@pytest.mark.parametrize("warehouse_url", ["postgres"], indirect=True)`.
    """
    with fresh_warehouse(str(request.param), tmp_path) as url:
        yield url
