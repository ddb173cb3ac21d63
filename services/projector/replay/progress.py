"""Progress of a replay: a bar on a terminal, and a log line every few seconds everywhere."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger(__name__)
LOG_EVERY_S = 5.0


class Progress:
    """Events done out of `total`, with rate and ETA. The bar goes to stderr, and only when
    stderr is a terminal and `bar` is true; the log lines are always written."""

    def __init__(self, total: int, *, bar: bool, label: str = "replay") -> None:
        self.total = total
        self.done = 0
        self._label = label
        self._started = self._logged = time.monotonic()
        self._bar = tqdm(
            total=total,
            unit="ev",
            unit_scale=True,
            desc=label,
            file=sys.stderr,
            disable=not (bar and sys.stderr.isatty()),
            dynamic_ncols=True,
        )
        # While the bar is drawn, log lines are written above it instead of through it.
        self._redirect = logging_redirect_tqdm() if not self._bar.disable else None

    def advance(self, events: int) -> None:
        self.done += events
        if self.done > self.total:  # the log grew while we read it
            self.total = self._bar.total = self.done
        self._bar.update(events)
        now = time.monotonic()
        if now - self._logged >= LOG_EVERY_S:
            self._logged = now
            self.log("replay progress")

    def log(self, message: str) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate else None
        log.info(
            message,
            extra={
                "done": self.done,
                "total": self.total,
                "rate_per_s": round(rate),
                "eta_s": None if left is None else round(left, 1),
            },
        )

    def __enter__(self) -> Progress:
        if self._redirect is not None:
            self._redirect.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bar.close()
        if self._redirect is not None:
            self._redirect.__exit__(exc_type, exc, tb)
