"""What flows between the workflow and its activities: references and counts, never records.

One input and one result model per step, so fields can be added without breaking runs
already in flight.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from switchyard.catalog.models import Destination, SyncPlan


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunRef(Model):
    """Identifies one run of one sync; stable across continue-as-new."""

    run_id: str
    sync: str

    @property
    def tag(self) -> str:
        """A short, SQL-safe name for the run's working tables."""
        return hashlib.sha1(self.run_id.encode()).hexdigest()[:16]


class DeliveryTuning(Model):
    chunk_size: int = Field(default=20_000, ge=1)
    window: int = Field(default=4, ge=1)
    heartbeat_timeout: timedelta = timedelta(seconds=20)
    chunks_per_execution: int = Field(default=400, ge=1)
    max_attempts: int = Field(default=12, ge=1)
    # How long a preflight waits for a worker serving the destination's task queue.
    pickup_timeout: timedelta = timedelta(minutes=1)


class Counts(Model):
    """A run's numbers, accumulated step by step; the summary prints these."""

    snapshot: int = 0
    invalid: dict[str, int] = Field(default_factory=dict)
    fields_dropped: dict[str, int] = Field(default_factory=dict)
    excluded: dict[str, int] = Field(default_factory=dict)
    eligible: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    forgotten: int = 0
    unchanged: int = 0
    to_send: int = 0
    sent: int = 0
    accepted: int = 0
    rejected: dict[str, int] = Field(default_factory=dict)
    batches: int = 0
    chunks: int = 0
    chunks_done: int = 0
    # Set when the run reused this run's plan: nothing it depended on had changed.
    unchanged_since: str | None = None


class SyncCheckpoint(Model):
    run_id: str
    plan: SyncPlan
    started_at: datetime
    counts: Counts
    next_chunk: int
    paused: bool = False
    fingerprint: str = ""


class AudienceSyncInput(Model):
    sync: str
    # Resolved by the starter so a run is pinned to the contract it was started with;
    # None (e.g. from a schedule) resolves it from the worker's catalog.
    plan: SyncPlan | None = None
    full_resync: bool = False
    dry_run: bool = False
    tuning: DeliveryTuning = DeliveryTuning()
    # Carried over by continue-as-new.
    resume: SyncCheckpoint | None = None


class StepInput(Model):
    run: RunRef
    plan: SyncPlan
    full_resync: bool = False


class QuietPlan(Model):
    """What a sync's last plan found when it had nothing to send; a run whose inputs are
    the same reuses it instead of validating, consent-filtering and diffing again."""

    planned_by: str  # the run that planned it
    invalid: dict[str, int] = Field(default_factory=dict)
    fields_dropped: dict[str, int] = Field(default_factory=dict)
    excluded: dict[str, int] = Field(default_factory=dict)
    eligible: int = 0

    @property
    def unchanged(self) -> int:
        # A kept plan left nothing to send: every eligible row is unchanged.
        return self.eligible


class SnapshotResult(Model):
    rows: int
    # What the run's plan depends on, hashed; and the last plan, when that matched it.
    fingerprint: str = ""
    quiet: QuietPlan | None = None


class ValidationResult(Model):
    valid: int
    invalid: dict[str, int]
    fields_dropped: dict[str, int]


class ConsentResult(Model):
    eligible: int
    excluded: dict[str, int]


class PlanInput(Model):
    run: RunRef
    plan: SyncPlan
    full_resync: bool = False
    chunk_size: int
    # The snapshot's fingerprint and the counts so far: kept if this plan sends nothing.
    fingerprint: str = ""
    counts: Counts | None = None


class ChangePlan(Model):
    added: int
    changed: int
    removed: int
    forgotten: int
    unchanged: int
    to_send: int
    chunks: int


class DeliverChunkInput(Model):
    run: RunRef
    destination: Destination
    chunk: int
    # Batches in flight inside this chunk; the window of chunks times this stays within the
    # contract's max_in_flight.
    concurrency: int = Field(default=1, ge=1)


class ChunkResult(Model):
    chunk: int
    sent: int = 0
    accepted: int = 0
    rejected: dict[str, int] = Field(default_factory=dict)
    batches: int = 0
    skipped_batches: int = 0


def delivery_task_queue(task_queue: str, destination: str) -> str:
    """The task queue a destination's deliveries run on, beside the sync's own queue.

    One queue per destination, each with its own worker slots: a slow or failing
    destination fills only its own slots, and syncs to the others keep their pace.
    """
    return f"{task_queue}.deliver.{destination}"


class CommitInput(Model):
    run: RunRef
    destination: Destination | None = None
    # The run ended well: destinations that finish a run as a whole (a file export's
    # manifest) are told so after the commit.
    complete: bool = False
    # The snapshot's fingerprint and the run's counts: a run that delivered its whole plan
    # keeps it for the next runs (see `quiet`).
    fingerprint: str = ""
    counts: Counts | None = None


class CommitResult(Model):
    delivered: int
    removed: int
    rejected: int


class ReportInput(Model):
    run: RunRef
    plan: SyncPlan
    status: str
    started_at: datetime
    counts: Counts
    dry_run: bool = False
    full_resync: bool = False
    error: str | None = None


class RunReport(Model):
    run_id: str
    sync: str
    audience: str
    audience_version: int
    destination: str
    contract_version: int
    status: str
    dry_run: bool
    full_resync: bool
    started_at: datetime
    finished_at: datetime
    counts: Counts
    error: str | None = None

    @property
    def duration(self) -> timedelta:
        return self.finished_at - self.started_at


class Progress(Model):
    """What the `progress` query answers."""

    run_id: str
    sync: str
    phase: str
    paused: bool
    counts: Counts
