"""The shared driver of the index benchmarks (`bench.executor_index`, `bench.api_index`): a
scratch database, migrated, the measurement at each `--rows` size, the database dropped."""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from localinfra.postgres import create_database, drop_database, ensure_postgres
from shared.migrations import migrate
from shared.settings import Settings

SIZES = [100_000, 1_000_000, 10_000_000]

Measure = Callable[[Settings, Sequence[int]], Coroutine[Any, Any, None]]


def run_sizes(description: str | None, measure: Measure) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rows", type=int, nargs="+", default=SIZES)
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:8]
    url = create_database(ensure_postgres(os.environ.get("DATABASE_URL")), f"akave_bench_{tag}")
    try:
        settings = Settings(_env_file=None, database_url=url)
        migrate(settings)
        asyncio.run(measure(settings, sorted(args.rows)))
    finally:
        drop_database(url)
