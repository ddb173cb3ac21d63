"""Restoring a partition's ledger from its snapshot, and taking the next one.

`restore` gives the ledger and the position to read on from: the snapshot's, or an empty
ledger at offset 0 when there is none or it is refused (unreadable, another format version,
or a position past the log's end: another log under the same topic name). Before a fold from
offset 0 the partition's index rows go too (`SnapshotStore.drop`), so a deleted snapshot is
rebuilt from the log alone. `take` writes the ledger as of its consumed position with what
finished since the last one.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge

from services.executor.ledger import PartitionLedger
from services.executor.snapshot import SnapshotRefused, decode, encode
from services.executor.snapshot_store import SnapshotStore

log = logging.getLogger(__name__)


class Snapshots:
    def __init__(self, store: SnapshotStore, outcomes: Counter, positions: Gauge) -> None:
        self.store = store
        self._outcomes = outcomes
        self._positions = positions

    async def restore(self, partition: int, end: int) -> tuple[PartitionLedger, int]:
        stored = await self.store.load(partition)
        ids = {"topic": self.store.topic, "partition": partition}
        if stored is not None:
            try:
                if stored.position > end:
                    raise SnapshotRefused(
                        f"snapshot position {stored.position} is past the log's end {end} "
                        "(was the topic deleted and created again?)"
                    )
                ledger = decode(stored.payload, stored.version, stored.checksum, stored.position)
            except SnapshotRefused as exc:
                self._outcomes.labels("refused").inc()
                log.error(
                    "snapshot refused; folding the partition from offset 0",
                    extra={**ids, "reason": str(exc)},
                )
            else:
                self._positions.labels(str(partition)).set(stored.position)
                log.info(
                    "partition restored from its snapshot",
                    extra={
                        **ids,
                        "position": stored.position,
                        "unfinished": stored.jobs,
                        "to_read": end - stored.position,
                    },
                )
                return ledger, stored.position
        else:
            log.info("no snapshot; folding the partition from offset 0", extra=ids)
        await self.store.drop(partition)
        return PartitionLedger(), 0

    async def take(self, partition: int, ledger: PartitionLedger, position: int) -> bool:
        """Write the snapshot at `position` (every record below it is folded). One at a time
        per ledger: False, and nothing done, while another is being written."""
        if ledger.flushing is not None:
            return False
        finished = ledger.start_flush()
        written = await self.store.save(partition, position, encode(ledger, position), finished)
        ledger.end_flush(written)
        self._outcomes.labels("written" if written else "failed").inc()
        if written:
            self._positions.labels(str(partition)).set(position)
        return written
