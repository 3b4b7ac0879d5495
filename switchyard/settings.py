"""Runtime settings, from the environment (prefix SWITCHYARD_) or defaults for the embedded stack.

Built by entry points (CLI, worker, tests), never at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_WEBHOOK_SECRET = "dev-only-webhook-secret"


class TemporalSettings(BaseModel):
    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = "switchyard"
    ui_url: str = "http://127.0.0.1:8233"


class DeliverySettings(BaseModel):
    # Rows per deliver activity: thousands, so history stays small (one activity ≈ 3.5 events).
    chunk_size: int = Field(default=20_000, ge=1)
    # Deliver activities in flight at once for one run.
    window: int = Field(default=4, ge=1)
    heartbeat_timeout_seconds: float = Field(default=20, gt=0)
    # Chunks delivered by one workflow execution before it continues as new.
    chunks_per_execution: int = Field(default=400, ge=1)
    # Deliver activities one worker runs at once for one destination (its own task queue).
    destination_slots: int = Field(default=8, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SWITCHYARD_", env_nested_delimiter="__", extra="ignore"
    )

    environment: str = "development"
    state_dir: Path = Path(".state")
    catalog_dir: Path = Path("examples/catalog")
    # Where profiles live and where sync state is kept: a DuckDB file path or a postgres:// URL.
    warehouse: str = ""
    # DuckDB's buffer pool in the worker; beyond it DuckDB spills to disk.
    duckdb_memory_limit: str = "1GB"
    temporal: TemporalSettings = TemporalSettings()
    delivery: DeliverySettings = DeliverySettings()
    simulator_host: str = "127.0.0.1"
    simulator_port: int = 8787

    def as_env(self) -> dict[str, str]:
        """These settings as environment variables, for child processes (worker, simulator)."""
        env: dict[str, str] = {}
        for name, value in self.model_dump(mode="json").items():
            if isinstance(value, dict):
                for sub, subvalue in value.items():
                    env[f"SWITCHYARD_{name.upper()}__{sub.upper()}"] = str(subvalue)
            else:
                env[f"SWITCHYARD_{name.upper()}"] = str(value)
        return env

    @property
    def warehouse_url(self) -> str:
        return self.warehouse or str(self.state_dir / "warehouse.duckdb")

    @property
    def simulator_url(self) -> str:
        return f"http://{self.simulator_host}:{self.simulator_port}"
