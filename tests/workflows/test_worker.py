"""The worker process: one worker for the sync, one delivery worker per destination."""

from __future__ import annotations

from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from switchyard.catalog.loader import load_catalog
from switchyard.settings import DeliverySettings, Settings, TemporalSettings
from tests.conftest import REPO
from worker import build_workers


async def test_each_destination_gets_its_own_delivery_queue_and_slots(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = Settings(
        state_dir=tmp_path,
        catalog_dir=REPO / "examples" / "catalog",
        warehouse=str(tmp_path / "warehouse.duckdb"),
        temporal=TemporalSettings(task_queue="q"),
        delivery=DeliverySettings(destination_slots=3),
    )
    main, *delivery = build_workers(time_skipping_env.client, settings)
    assert main.task_queue == "q"
    destinations = load_catalog(settings.catalog_dir).destinations
    assert {w.task_queue for w in delivery} == {f"q.deliver.{name}" for name in destinations}
    assert "q.deliver.crm_webhook" in {w.task_queue for w in delivery}
    # A slow destination can hold at most its own slots, never the sync's or another's.
    assert {w.config()["max_concurrent_activities"] for w in delivery} == {3}
    activities = {w.task_queue: {a.__name__ for a in w.config()["activities"]} for w in delivery}
    assert activities["q.deliver.crm_webhook"] == {"check_destination", "deliver_chunk"}
    assert "deliver_chunk" not in {a.__name__ for a in main.config()["activities"]}
