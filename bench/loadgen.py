"""Open-loop HTTP load at a fixed arrival rate, in a process of its own.

Request i is due at t0 + i/rate whether or not earlier answers came back (open loop), and its
latency is measured from that due time, not from when a connection was free to send it: a
stalled server therefore shows up in the percentiles instead of silently lowering the rate
(no coordinated omission). HTTP/1.1 keep-alive connections are opened as needed, up to
`--max-connections`; a request that finds none free waits, and the wait counts.

With `--complete-dsn` it also measures end to end: every accepted job id is watched in
`bucket_jobs` (one query for all pending ids every `--poll-ms`), and the time from the
request's due time to the first poll that sees the job `completed` is recorded.

Prints one JSON object on stdout. `python -m bench.loadgen --help` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    accepted: dict[str, float] = field(default_factory=dict)  # job id -> due time
    done: dict[str, float] = field(default_factory=dict)  # job id -> e2e latency
    failed: int = 0


class Pool:
    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.opened = 0

    async def get(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle.empty() and self.opened < self.limit:
            self.opened += 1
            return await asyncio.open_connection(self.host, self.port)
        return await self.idle.get()

    def put(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.idle.put_nowait(conn)

    def drop(self) -> None:
        self.opened -= 1


async def exchange(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
) -> tuple[int, bytes]:
    reader, writer = conn
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length) if length else b""
    return status, body


def request_bytes(host: str, path: str, name: str) -> bytes:
    body = orjson.dumps({"bucket_name": name})
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def one(pool: Pool, request: bytes, due: float, result: Result, watch: bool) -> None:
    try:
        conn = await pool.get()
    except OSError:
        pool.drop()
        result.errors += 1
        return
    try:
        status, body = await exchange(conn, request)
    except (OSError, asyncio.IncompleteReadError, ValueError):
        pool.drop()
        conn[1].close()
        result.errors += 1
        return
    pool.put(conn)
    result.latencies.append(time.perf_counter() - due)
    result.statuses[status] = result.statuses.get(status, 0) + 1
    if watch and status == 202:
        result.accepted[orjson.loads(body)["job_id"]] = due


async def watch_completions(dsn: str, result: Result, poll_s: float, stop: asyncio.Event) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while True:
            pending = [uuid.UUID(j) for j in result.accepted if j not in result.done]
            if pending:
                rows = await conn.execute(
                    "SELECT id, status FROM bucket_jobs WHERE id = ANY(%s) "
                    "AND status IN ('completed', 'failed')",
                    (pending,),
                )
                now = time.perf_counter()
                for job_id, status in await rows.fetchall():
                    key = str(job_id)
                    result.done[key] = now - result.accepted[key]
                    if status != "completed":
                        result.failed += 1
            elif stop.is_set():
                return
            await asyncio.sleep(poll_s)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": at(1.0)}


async def run(args: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    pool = Pool(host, port, args.max_connections)
    result = Result()
    stop = asyncio.Event()
    watcher = None
    if args.complete_dsn:
        watcher = asyncio.create_task(
            watch_completions(args.complete_dsn, result, args.poll_ms / 1000, stop)
        )
    total = int(args.rate * args.duration)
    prefix = f"{args.name_prefix}-{os.getpid()}"
    requests = [request_bytes(host, url.path, f"{prefix}-{i}") for i in range(total)]
    cpu0 = time.process_time()
    tasks = set()
    start = time.perf_counter() + 0.05
    for i, request in enumerate(requests):
        due = start + i / args.rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(pool, request, due, result, watcher is not None))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sent_in = time.perf_counter() - start
    if tasks:
        await asyncio.wait(tasks, timeout=args.drain_s)
    answered_in = time.perf_counter() - start
    if watcher is not None:
        deadline = time.perf_counter() + args.drain_s
        while len(result.done) < len(result.accepted) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        watcher.cancel()
    cpu = time.process_time() - cpu0
    out: dict[str, object] = {
        "offered_rate": args.rate,
        "requests": total,
        "answered": len(result.latencies),
        "achieved_rate": len(result.latencies) / answered_in if answered_in else 0.0,
        "send_seconds": sent_in,
        "statuses": result.statuses,
        "errors": result.errors,
        "connections": pool.opened,
        "loadgen_cpu_s": cpu,
        "loadgen_cpu_share": cpu / answered_in if answered_in else 0.0,
        "loadgen_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "accept": percentiles(result.latencies),
    }
    if watcher is not None:
        out["completed"] = len(result.done) - result.failed
        out["failed"] = result.failed
        out["never_seen"] = len(result.accepted) - len(result.done)
        out["end_to_end"] = percentiles(list(result.done.values()))
        if args.dump_jobs:  # wall-clock due and seen times, to split the latency by stage
            wall = time.time() - time.perf_counter()
            out["jobs"] = {
                j: [wall + due, wall + due + result.done[j]]
                for j, due in result.accepted.items()
                if j in result.done
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="e.g. http://127.0.0.1:8000/buckets")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of arrivals")
    parser.add_argument("--max-connections", type=int, default=256)
    parser.add_argument("--name-prefix", default="o")
    parser.add_argument("--complete-dsn", help="libpq DSN: also measure until completed")
    parser.add_argument("--poll-ms", type=float, default=5.0)
    parser.add_argument("--drain-s", type=float, default=30.0)
    parser.add_argument("--dump-jobs", action="store_true", help="per-job times in the output")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
