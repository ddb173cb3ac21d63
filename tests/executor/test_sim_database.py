"""SIM_DATABASE_URL puts the simulated chain in a database apart from the gateway's."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from localinfra.postgres import create_database, drop_database
from services.executor.backends.simulated import SimulatedChain
from shared.db import make_engine
from shared.settings import Settings


def test_blank_means_unset_and_libpq_urls_get_the_psycopg_driver() -> None:
    assert Settings(_env_file=None, sim_database_url=" ").sim_database_url is None
    given = Settings(_env_file=None, sim_database_url="postgres://u:p@h:1/chain")
    assert given.sim_database_url == "postgresql+psycopg://u:p@h:1/chain"


async def _has_sim_schema(url: str) -> bool:
    engine = make_engine(Settings(_env_file=None, database_url=url))
    try:
        async with engine.connect() as conn:
            found = await conn.scalar(
                text("SELECT count(*) FROM pg_namespace WHERE nspname = 'akave_sim'")
            )
            return bool(found)
    finally:
        await engine.dispose()


async def test_the_chain_lives_in_its_own_database(base_settings: Settings) -> None:
    gateway_url = create_database(base_settings.database_url, f"akave_gw_{uuid.uuid4().hex[:10]}")
    chain_url = create_database(base_settings.database_url, f"akave_ch_{uuid.uuid4().hex[:10]}")
    try:
        settings = base_settings.model_copy(
            update={"database_url": gateway_url, "sim_database_url": chain_url, "sim_latency_ms": 0}
        )
        chain = await SimulatedChain.open(settings)
        try:
            await chain.create_bucket("apart-bucket")
            assert await chain.create_calls("apart-bucket") == {"created": 1}
        finally:
            await chain.close()
        assert await _has_sim_schema(chain_url)
        assert not await _has_sim_schema(gateway_url)
    finally:
        drop_database(gateway_url)
        drop_database(chain_url)
