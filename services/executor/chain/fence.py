"""One signer per key across processes: Postgres session advisory locks, one per (chain id,
signer address), all held on one dedicated connection of the executor.

Rules:
- An executor takes the locks of its whole key pool, all or none, before it joins the
  consumer group; until it has them it is a standby and says so. Taking all or none (and
  trying again) means two executors with overlapping pools never deadlock.
- Before every signing the lane calls `verify()`: one query on the dedicated connection, with
  a timeout, proves the connection is alive and every lock is in `pg_locks` for its backend.
  Concurrent callers share one query, but only one that started after they asked.
- A failed, timed-out or short answer means the fence is lost: `verify()` never returns (the
  lane signs nothing more, and no job is failed for it), `lost` is set, and the executor
  restarts in its own process, as a standby (`SignerFenceLost` is a `RestartNeeded`).
- Postgres releases the locks of a session whose socket closes, so a SIGKILLed holder's locks
  are free at once; TCP keepalives on the session bound how long a vanished host holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Sequence
from typing import Protocol

import psycopg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

LOCK_SCOPE = "akave-gateway/signer"
HELD_LOCKS = """
SELECT classid::int8 * 4294967296 + objid::int8
FROM pg_locks
WHERE locktype = 'advisory' AND objsubid = 1 AND granted AND pid = pg_backend_pid()
"""


class Fence(Protocol):
    async def verify(self) -> None:
        """Return only while this process may sign; otherwise never return."""


class Unfenced:
    """No other process signs with these keys (tests, tools): signing is always allowed."""

    async def verify(self) -> None:
        return None


UNFENCED = Unfenced()


def lock_key(chain_id: int, address: str) -> int:
    """The advisory lock id of one signer on one chain: a stable, non-negative 63-bit hash."""
    digest = hashlib.sha256(f"{LOCK_SCOPE}:{chain_id}:{address.lower()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def libpq_url(database_url: str) -> str:
    """The SQLAlchemy URL as libpq takes it (no `+psycopg` driver part)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


class SignerFence:
    """The locks of one key pool on one dedicated connection; `acquire()`, then `verify()`."""

    def __init__(
        self,
        database_url: str,
        check_timeout_s: float = 2.0,
        retry_s: float = 0.5,
        keepalive_s: int = 5,
    ) -> None:
        self._conninfo = libpq_url(database_url)
        self._timeout = check_timeout_s
        self._retry = retry_s
        self._keepalive = keepalive_s
        self._conn: psycopg.AsyncConnection[tuple[int]] | None = None
        self._keys: dict[int, str] = {}  # lock id -> what it fences, for the logs
        self._check = asyncio.Lock()
        self._started = 0  # checks started so far
        self._last_ok = False
        self.lost = asyncio.Event()

    @property
    def held(self) -> bool:
        return self._conn is not None and not self.lost.is_set()

    async def acquire(
        self, chain_id: int, addresses: Sequence[str], stop: asyncio.Event | None = None
    ) -> bool:
        """Wait until every signer's lock is ours (True), or `stop` is set first (False)."""
        self._keys = {lock_key(chain_id, a): f"{chain_id}/{a}" for a in addresses}
        standby_logged = False
        while stop is None or not stop.is_set():
            try:
                if await self._try_all():
                    log.info(
                        "signer locks held; this executor signs",
                        extra={"signers": sorted(self._keys.values())},
                    )
                    self._started, self._last_ok = 1, True
                    return True
            except (psycopg.Error, OSError, TimeoutError) as exc:
                log.warning("cannot reach Postgres for the signer locks", extra={"error": str(exc)})
                await self._disconnect()
            if not standby_logged:
                log.info(
                    "standby: another executor holds a signer lock; waiting for it",
                    extra={"signers": sorted(self._keys.values())},
                )
                standby_logged = True
            if stop is None:
                await asyncio.sleep(self._retry)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._retry)
        return False

    async def _try_all(self) -> bool:
        async with asyncio.timeout(self._timeout * 2):
            conn = await self._connection()
            taken: list[int] = []
            for key in sorted(self._keys):
                row = await (
                    await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                ).fetchone()
                if row is None or not row[0]:
                    for held in taken:  # all or none: never sit on part of a pool
                        await conn.execute("SELECT pg_advisory_unlock(%s)", (held,))
                    return False
                taken.append(key)
            return True

    async def _connection(self) -> psycopg.AsyncConnection[tuple[int]]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=max(1, int(self._timeout)),
                keepalives=1,
                keepalives_idle=self._keepalive,
                keepalives_interval=1,
                keepalives_count=3,
                application_name="akave-executor-signer-fence",
                # the session idles for as long as it holds the locks: no idle timeout may end
                # it; the server-side keepalives free the locks of a vanished host
                options=(
                    "-c idle_session_timeout=0 -c statement_timeout=0 "
                    f"-c tcp_keepalives_idle={self._keepalive} -c tcp_keepalives_interval=1 "
                    "-c tcp_keepalives_count=3"
                ),
            )
        return self._conn

    async def verify(self) -> None:
        ticket = self._started
        async with self._check:
            if self.lost.is_set():
                pass
            elif self._started > ticket and self._last_ok:
                return  # a check that started after we asked has just proved it
            else:
                self._started += 1
                self._last_ok = await self._still_held()
                if self._last_ok:
                    return
        await self._lose()

    async def watch(self, interval_s: float) -> None:
        """Verify every `interval_s` even while nothing is signed, so a holder that lost its
        locks notices (and restarts as a standby) without waiting for its next transaction."""
        while True:
            await asyncio.sleep(interval_s)
            await self.verify()

    async def _still_held(self) -> bool:
        conn = self._conn
        if conn is None:
            return False
        try:
            async with asyncio.timeout(self._timeout):
                rows = await (await conn.execute(HELD_LOCKS)).fetchall()
        except (psycopg.Error, OSError, TimeoutError) as exc:
            log.error("signer fence check failed", extra={"error": str(exc) or type(exc).__name__})
            return False
        missing = set(self._keys) - {row[0] for row in rows}
        if missing:
            log.error(
                "signer lock no longer held",
                extra={"signers": sorted(self._keys[k] for k in missing)},
            )
        return not missing

    async def _lose(self) -> None:
        if not self.lost.is_set():
            log.error("signer fence lost: this executor signs nothing more and starts again")
            self.lost.set()
        await asyncio.Event().wait()  # never returns: whoever asked to sign must not

    async def close(self) -> None:
        """Release the locks (closing the session does)."""
        await self._disconnect()

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()
