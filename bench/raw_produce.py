"""The log's ceiling: raw aiokafka appends of `BucketRequested` records, in a process of its own.

Closed loop like the HTTP benchmark: C concurrent senders, each waiting for its record's
acknowledgement before the next, through the gateway's own producer settings (`make_producer`:
acks=all, idempotent, linger 0) and the same topic and partitions. The records (the exact bytes
the API would append, keys = bucket names) are encoded before the clock starts.

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
import uuid

from shared.events import CONTENT_TYPE_HEADER, BucketRequested, encode, new_event, record_key
from shared.kafka import make_producer
from shared.settings import Settings

SOURCE = "/akave-gateway/api"


async def run(concurrency: int, duration: float, prefix: str) -> dict[str, object]:
    settings = Settings()
    topic = settings.bucket_events_topic
    records = []
    for i in range(20_000):
        event = new_event(BucketRequested(job_id=uuid.uuid4(), bucket_name=f"{prefix}-{i}"), SOURCE)
        records.append((encode(event), record_key(event)))
    producer = make_producer(settings)
    await producer.start()
    latencies: list[float] = []
    next_record = itertools.cycle(records)
    try:
        await producer.send_and_wait(topic, records[0][0], key=records[0][1])  # metadata, warm
        end = time.perf_counter() + duration

        async def sender() -> None:
            while time.perf_counter() < end:
                value, key = next(next_record)
                began = time.perf_counter()
                await producer.send_and_wait(topic, value, key=key, headers=[CONTENT_TYPE_HEADER])
                latencies.append(time.perf_counter() - began)

        cpu0 = time.process_time()
        began = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu0
    finally:
        await producer.stop()
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "rate": len(latencies) / elapsed,
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
        "cpu_share": cpu / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--prefix", default="raw")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(args.concurrency, args.duration, args.prefix))))


if __name__ == "__main__":
    main()
