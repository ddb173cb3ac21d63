"""The one way to reach Postgres: an async engine and a session factory built from Settings."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from shared.settings import Settings


def make_engine(
    settings: Settings, *, pool_size: int = 10, max_overflow: int | None = None
) -> AsyncEngine:
    """An engine that fails fast when Postgres is down instead of hanging the caller.

    `max_overflow` defaults to `pool_size`. Overflow connections are opened and closed per use,
    so a busy server is better off with `max_overflow=0` and a queue for the pool.
    """
    timeout_ms = int(settings.db_timeout_s * 1000)
    return create_async_engine(
        settings.database_url,
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_timeout=settings.db_timeout_s,
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": max(1, int(settings.db_timeout_s)),
            "options": f"-c statement_timeout={timeout_ms * 5}",
        },
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
