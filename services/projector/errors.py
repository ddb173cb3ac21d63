"""The errors the projector and replay raise, under one root."""

from __future__ import annotations

from shared.errors import GatewayError


class ProjectorError(GatewayError, RuntimeError):
    """Root of the errors the projector (live projection and replay) raises."""


class ReadModelAhead(ProjectorError):
    """The checkpoints are past the log's end: the read model was folded from another log."""


class AnotherReplayRunning(ProjectorError):
    def __init__(self, lock: str) -> None:
        super().__init__(
            f"another replay is already running on this database (advisory lock {lock!r} is "
            "held); wait for it to finish"
        )


class ReplayInterrupted(ProjectorError):
    """Replay stopped (a signal) before the swap; the live tables are as they were."""


class BulkLoadStopped(ProjectorError):
    """A bulk-load worker was told to stop before it reached the end of its partitions."""
