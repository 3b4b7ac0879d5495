"""What the two peers (floor, dlt) share: the rows they read, the batches they post, and how
they report back to the orchestrator.

Both read the columns the bench contract maps, straight from `profiles`, and post the body
shape the webhook client sends (`render_body`): an envelope with `upsert` operations keyed by
profile_id, signed with the client's own `sign` and secret resolution. Each peer runs as its
own process (`python -m bench.floor` / `bench.dlt_peer`), like the worker does, and prints
one JSON line with its result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from switchyard.destinations.webhook.client import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from switchyard.destinations.webhook.client import resolve_secret as _resolve_secret
from switchyard.destinations.webhook.spec import WebhookConfig

BATCH_SIZE = 1000
IN_FLIGHT = 8
CONTRACT_VERSION = 1
KEY = "profile_id"
# The bench contract's sent fields (bench/catalog/destinations/bench_webhook.yaml).
FIELDS = (
    "email",
    "first_name",
    "last_name",
    "phone",
    "plan",
    "lifetime_value",
    "orders_count",
    "last_order_at",
)
QUERY = f"SELECT {KEY}, {', '.join(FIELDS)} FROM profiles"


@dataclass
class PeerResult:
    name: str
    records: int
    accepted: int
    requests: int
    body_bytes: int
    seconds: float

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "records_per_s": self.records_per_s}


def secret() -> bytes:
    """The secret the worker's client would use, from the same environment."""
    return _resolve_secret(WebhookConfig(url="http://unused"), "development", os.environ)


def envelope(operations: list[dict[str, Any]], batch_id: str, sync: str) -> bytes:
    return orjson.dumps(
        {
            "batch_id": batch_id,
            "sync": sync,
            "contract_version": CONTRACT_VERSION,
            "operations": operations,
        }
    )


def batch_key(peer: str, number: int) -> str:
    # Deterministic, like the engine's: a re-run of the same peer is a re-send of the same batch.
    return hashlib.sha256(f"{peer}/{number}".encode()).hexdigest()[:32]


def headers(key: bytes, body: bytes, idempotency_key: str) -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(key, timestamp, body),
        "Idempotency-Key": idempotency_key,
    }


def accepted_count(status: int, content: bytes) -> int:
    """Accepted records from the simulator's answer; any other status is a failed benchmark."""
    if status != 200:
        raise RuntimeError(f"destination answered HTTP {status}: {content[:200]!r}")
    return int(orjson.loads(content)["accepted"])


def cli(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--warehouse", required=True, help="DuckDB file with `profiles`")
    parser.add_argument("--url", required=True, help="hook URL, e.g. http://127.0.0.1:1234/hooks/x")
    parser.add_argument("--work-dir", help="scratch folder (dlt's pipelines dir)")
    return parser.parse_args()


def emit(result: PeerResult) -> None:
    """The orchestrator reads the last stdout line."""
    sys.stdout.write(json.dumps(result.to_json()) + "\n")
    sys.stdout.flush()
