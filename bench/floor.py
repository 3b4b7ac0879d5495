"""The floor: what this machine allows for DuckDB → HTTP, with no Temporal and no state.

A plain loop: `fetchmany` rows, build dicts, orjson, sign, post with httpx, 8 requests in
flight. Building a batch runs on the event loop between sends, as a simple client would;
it is the client's CPU that bounds this path, not the sink.

python -m bench.floor --warehouse W --url URL
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from bench import peer
from switchyard.warehouse.duckdb_lock import connect_with_retry

NAME = "floor"


class _Totals:
    records = requests = body_bytes = accepted = 0


async def run(warehouse: Path, url: str) -> peer.PeerResult:
    key = peer.secret()
    names = peer.FIELDS
    slots = asyncio.Semaphore(peer.IN_FLIGHT)
    # Kept to the end (a thousand small tasks) so a failed post is re-raised, never lost.
    sending: list[asyncio.Task[None]] = []
    totals = _Totals()
    limits = httpx.Limits(max_connections=peer.IN_FLIGHT, max_keepalive_connections=peer.IN_FLIGHT)
    started = time.perf_counter()
    con = connect_with_retry(warehouse, read_only=True)
    try:
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:

            async def post(body: bytes, idempotency_key: str) -> None:
                try:
                    response = await http.post(
                        url, content=body, headers=peer.headers(key, body, idempotency_key)
                    )
                    totals.accepted += peer.accepted_count(response.status_code, response.content)
                finally:
                    slots.release()

            cursor = con.execute(peer.QUERY)
            while rows := cursor.fetchmany(peer.BATCH_SIZE):
                operations = [
                    {
                        "op": "upsert",
                        "key": row[0],
                        "fields": dict(zip(names, row[1:], strict=True)),
                    }
                    for row in rows
                ]
                idempotency_key = peer.batch_key(NAME, totals.requests)
                body = peer.envelope(operations, idempotency_key, "bench_floor")
                await slots.acquire()
                sending.append(asyncio.create_task(post(body, idempotency_key)))
                # Let the new request go out before building the next body; otherwise eight
                # bodies leave together, come back together, and client and sink take turns.
                await asyncio.sleep(0)
                totals.records += len(rows)
                totals.requests += 1
                totals.body_bytes += len(body)
            # A failed post fails the measurement: a benchmark with errors reports no number.
            await asyncio.gather(*sending)
    finally:
        con.close()
    seconds = time.perf_counter() - started
    return peer.PeerResult(
        NAME, totals.records, totals.accepted, totals.requests, totals.body_bytes, seconds
    )


def main() -> None:
    args = peer.cli(__doc__ or NAME)
    peer.emit(asyncio.run(run(Path(args.warehouse), args.url)))


if __name__ == "__main__":
    main()
