"""Rate-limited vendor destination: how much of HubSpot's allowance Switchyard's client uses.

The HubSpot simulator is set to an allowance of 190 requests per 10 s (HubSpot
Professional); the production HubSpot client, paced by the same limiter the worker uses
(the contract's `rate_limit`, fed by the `X-HubSpot-RateLimit-*` headers), sends batches of
100 contacts with 8 requests in flight for `--seconds`. Reported: achieved requests/s over
the allowance's requests/s, and how many 429s came back (target ≥ 0.95 with none).

    python -m bench.vendor_rate [--seconds 30] [--json bench/results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx

from switchyard.catalog.models import Contract, Destination, Identifier, RateLimit, TraitType
from switchyard.delivery.ratelimit import RateLimiters
from switchyard.destinations import registry
from switchyard.errors import RateLimitedError
from switchyard.pipeline.checkpoints import Batch, Operation
from switchyard.simulators.server import run_in_thread

ALLOWANCE = {"requests": 190, "per_seconds": 10}
IN_FLIGHT = 8
BATCH = 100
TARGET = 0.95


def _batch(number: int) -> Batch:
    operations = [
        Operation("upsert", f"user{number}-{i}@example.com", '{"plan":"pro","firstname":"Ada"}')
        for i in range(BATCH)
    ]
    return Batch(chunk=0, number=number, operations=operations, run_id="bench")


async def measure(seconds: float) -> dict[str, Any]:
    spec = registry.SPECS["hubspot"]
    app = registry.simulator_app("hubspot")
    with run_in_thread(app) as base_url:
        httpx.put(f"{base_url}/_sim/config", json={"rate_limit": ALLOWANCE}).raise_for_status()
        limit = RateLimit(**ALLOWANCE)
        destination = Destination(
            name="bench_hubspot",
            owner="bench",
            config=spec.example_config(base_url),
            contract=Contract(
                version=1,
                identifier=Identifier(name="email", source="email", type=TraitType.EMAIL),
                batch_size=BATCH,
                rate_limit=limit,
            ),
        )
        limiter = RateLimiters().for_destination(destination.name, limit)
        client = registry.create_client(destination, "bench", limiter, "development", {})
        sent: list[float] = []
        refused = 0
        deadline = time.monotonic() + seconds
        numbers = iter(range(1_000_000))

        async def sender() -> None:
            nonlocal refused
            while time.monotonic() < deadline:
                batch = _batch(next(numbers))
                try:
                    await client.send(batch, f"k{batch.number}")
                except RateLimitedError:
                    refused += 1
                    continue
                sent.append(time.monotonic())

        started = time.monotonic()
        try:
            await asyncio.gather(*(sender() for _ in range(IN_FLIGHT)))
        finally:
            await client.aclose()
        stats = httpx.get(f"{base_url}/_sim/stats").json()
    window = (sent[-1] - started) if sent else 0.0
    allowed_per_s = ALLOWANCE["requests"] / ALLOWANCE["per_seconds"]
    achieved_per_s = len(sent) / window if window else 0.0
    status_429 = int(stats["status_counts"].get("429", 0))
    utilisation = round(achieved_per_s / allowed_per_s, 4)
    return {
        "destination": "hubspot (simulator, production client)",
        "allowance": ALLOWANCE,
        "batch_size": BATCH,
        "in_flight": IN_FLIGHT,
        "seconds": round(window, 2),
        "requests_accepted": len(sent),
        "records_per_s": round(len(sent) * BATCH / window, 1) if window else 0.0,
        "achieved_requests_per_s": round(achieved_per_s, 3),
        "allowed_requests_per_s": allowed_per_s,
        "utilisation": utilisation,
        "status_429": status_429,
        "client_rate_limited_errors": refused,
        "early_retries": stats.get("early_retries", 0),
        "target": TARGET,
        "meets_target": utilisation >= TARGET and status_429 == 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.vendor_rate", description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--json", type=Path, help="merge the result into this results file as `vendor_rate_limit`"
    )
    args = parser.parse_args()
    result = asyncio.run(measure(args.seconds))
    print(
        f"hubspot: {result['achieved_requests_per_s']} req/s of {result['allowed_requests_per_s']} "
        f"allowed = {result['utilisation']:.1%} ({result['records_per_s']:,} records/s), "
        f"{result['status_429']} answered 429"
    )
    if args.json is not None:
        data = json.loads(args.json.read_text()) if args.json.exists() else {}
        data["vendor_rate_limit"] = result
        args.json.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
