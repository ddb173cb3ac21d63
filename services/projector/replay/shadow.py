"""The shadow copy of the read model that a replay builds, and the swap that puts it live.

The shadow tables live in their own schema (`SHADOW_SCHEMA`) under the live tables' own names,
with the live tables' columns, constraints and indexes under the same names as well (index
names are unique per schema only). Swapping is then moving tables between schemas in one
transaction: nothing is renamed, so what Alembic created keeps the names later migrations
expect, and the projector's SQL (which never names a schema) reads whichever table is live.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

SHADOW_SCHEMA = "akave_rebuild"
TABLES = ("bucket_jobs", "projector_checkpoints")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_$]*$")


def _ident(name: str) -> str:
    """Names come from the catalog; refuse anything that would need quoting rather than guess."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"unexpected identifier {name!r}")
    return name


async def live_schema(conn: AsyncConnection) -> str:
    """The schema in which `bucket_jobs` is found by the search path (normally `public`)."""
    name = await conn.scalar(
        text(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = to_regclass('bucket_jobs')"
        )
    )
    if name is None:
        raise RuntimeError("table bucket_jobs not found: run `akave-gateway migrate` first")
    return _ident(str(name))


async def create(conn: AsyncConnection, live: str) -> None:
    """A fresh, empty shadow schema: what an earlier, interrupted replay left is thrown away.

    Only columns, defaults and CHECK constraints now; keys and indexes come after the bulk
    load (`add_indexes`), which is much faster than maintaining them row by row.
    """
    await conn.execute(text(f"DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE"))
    await conn.execute(text(f"CREATE SCHEMA {SHADOW_SCHEMA}"))
    for table in TABLES:
        await conn.execute(
            text(
                f"CREATE TABLE {SHADOW_SCHEMA}.{table} "
                f"(LIKE {live}.{table} INCLUDING ALL EXCLUDING INDEXES)"
            )
        )
        grants = await conn.execute(
            text(
                "SELECT grantee, privilege_type FROM information_schema.role_table_grants "
                "WHERE table_schema = :s AND table_name = :t AND grantee <> current_user"
            ),
            {"s": live, "t": table},
        )
        for grantee, privilege in grants:
            await conn.execute(text(f'GRANT {privilege} ON {SHADOW_SCHEMA}.{table} TO "{grantee}"'))


async def drop(conn: AsyncConnection) -> None:
    await conn.execute(text(f"DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE"))


async def add_indexes(conn: AsyncConnection, live: str) -> None:
    """Give the shadow tables the live tables' keys, constraints and indexes, same names."""
    for table in TABLES:
        constraints = await conn.execute(
            text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = CAST(:rel AS regclass) AND contype IN ('p', 'u', 'x', 'f') "
                "ORDER BY contype, conname"
            ),
            {"rel": f"{live}.{table}"},
        )
        for name, definition in list(constraints):
            await conn.execute(
                text(
                    f"ALTER TABLE {SHADOW_SCHEMA}.{table} "
                    f"ADD CONSTRAINT {_ident(name)} {definition}"
                )
            )
        indexes = await conn.execute(
            text(
                "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
                "WHERE i.indrelid = CAST(:rel AS regclass) AND NOT EXISTS "
                "(SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid "
                "AND c.conrelid = i.indrelid)"
            ),
            {"rel": f"{live}.{table}"},
        )
        for (definition,) in list(indexes):
            on_live = f" ON {live}.{table} USING "
            if on_live not in definition:
                raise RuntimeError(f"cannot copy index definition {definition!r}")
            await conn.execute(
                text(definition.replace(on_live, f" ON {SHADOW_SCHEMA}.{table} USING ", 1))
            )
        await conn.execute(text(f"ANALYZE {SHADOW_SCHEMA}.{table}"))


async def swap(session: AsyncSession, live: str, *, keep_old: bool) -> str | None:
    """Put the shadow tables live, inside the caller's transaction; return where the old went.

    The caller holds the projection lock, so no projector batch is half way through. The
    ACCESS EXCLUSIVE locks wait for readers' transactions to end (bounded by the caller's
    `lock_timeout`); queries that start after the commit find the new tables by name.
    """
    old_schema = None
    tables = ", ".join(f"{live}.{t}" for t in TABLES)
    await session.execute(text(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE"))
    if keep_old:
        old_schema = "akave_replaced_" + datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
        await session.execute(text(f"CREATE SCHEMA {old_schema}"))
    for table in TABLES:
        if old_schema:
            await session.execute(text(f"ALTER TABLE {live}.{table} SET SCHEMA {old_schema}"))
        else:
            await session.execute(text(f"DROP TABLE {live}.{table}"))
        await session.execute(text(f"ALTER TABLE {SHADOW_SCHEMA}.{table} SET SCHEMA {live}"))
    await session.execute(text(f"DROP SCHEMA {SHADOW_SCHEMA}"))
    return old_schema
