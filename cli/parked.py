"""`akave-gateway parked list|redrive`: the command line over `shared/parked.py`."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence

from shared.parked import (
    Outcome,
    Parked,
    ParkedError,
    key_text,
    preview,
    read_parked,
    redrive,
    select,
)
from shared.settings import Settings


def format_list(entries: Sequence[Parked]) -> str:
    if not entries:
        return "no parked records"
    lines = []
    for e in entries:
        state = f"redriven to {e.redriven_to}" if e.redriven_to else "parked"
        copies = ", ".join(f"{p}:{o}" for p, o in sorted(e.copies))
        lines.append(f"{e.id}  {e.origin}  by {','.join(e.consumers)}  {state}")
        lines.append(f"    dlq copies: {copies}")
        for error in e.errors:
            lines.append(f"    error: {error[:200]}")
        lines.append(f"    key:   {key_text(e.key)}")
        lines.append(f"    value: {preview(e.value)}")
    return "\n".join(lines)


def list_command(settings: Settings, as_json: bool) -> int:
    try:
        entries = asyncio.run(read_parked(settings))
    except ParkedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps([e.as_json() for e in entries], indent=2))
    else:
        print(format_list(entries))
    return 0


def redrive_command(
    settings: Settings, ids: Sequence[str], everything: bool, dry_run: bool, as_json: bool
) -> int:
    async def go() -> list[Outcome]:
        chosen = select(await read_parked(settings), ids, everything)
        return await redrive(settings, chosen, dry_run)

    try:
        outcomes = asyncio.run(go())
    except ParkedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps([o.as_json() for o in outcomes], indent=2))
    else:
        for o in outcomes:
            target = f" -> {o.to}" if o.to else ""
            print(f"{o.action}: {o.entry.id} ({o.entry.origin}){target}")
        if not outcomes:
            print("nothing to redrive")
    return 0
