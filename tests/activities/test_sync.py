"""The sync's activities as adapters: what each one hands the domain and the destination."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from activities.sync import SyncActivities
from switchyard.catalog.models import Destination, FieldMapping
from switchyard.delivery.engine import deliver_chunk
from switchyard.delivery.ratelimit import RateLimiter
from switchyard.destinations.file_export.spec import FileExportConfig
from switchyard.destinations.registry import create_client
from switchyard.runs import CommitInput
from switchyard.settings import Settings
from tests.support.catalogs import webhook_plan
from tests.support.pipeline import plan_run
from tests.support.warehouse import MakeWarehouse, profile


@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
async def test_commit_completes_the_run_at_a_destination_that_finishes_runs_only_when_asked(
    make_warehouse: MakeWarehouse, tmp_path: Path
) -> None:
    warehouse = make_warehouse([profile(i) for i in range(6)])
    plan = webhook_plan(fields=[FieldMapping(name="plan", source="plan")])
    files = tmp_path / "export"
    files.mkdir()
    destination = Destination(
        name="crm_webhook",
        owner="test",
        config=FileExportConfig(directory=str(files)),
        contract=plan.destination.contract,
    )
    plan = plan.model_copy(update={"destination": destination})
    run, _, _, changes = plan_run(warehouse, plan, "run-1")
    client = create_client(destination, plan.sync.name, RateLimiter(None), "development", {})
    try:
        for chunk in range(changes.chunks):
            await deliver_chunk(warehouse, client, run, chunk)
    finally:
        await client.aclose()
    activities = SyncActivities(warehouse, Settings(state_dir=tmp_path), {})
    manifest = files / plan.sync.name / run.run_id / "manifest.json"
    try:
        env = ActivityEnvironment()
        # A run that ended badly is committed, but its files stay unannounced.
        await env.run(activities.commit_delivered, CommitInput(run=run, destination=destination))
        assert not manifest.exists()
        await env.run(
            activities.commit_delivered,
            CommitInput(run=run, destination=destination, complete=True),
        )
    finally:
        await activities.aclose()
    assert json.loads(manifest.read_text())["totals"]["rows"] == changes.added > 0
    assert (manifest.parent / "_SUCCESS").exists()
