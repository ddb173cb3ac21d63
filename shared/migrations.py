"""Migrations: bring the read model's schema to Alembic's newest revision.

The one entry point for `akave-gateway migrate`, the dev runner, the tests, the fault suite and
the benchmarks. Alembic's own files (`alembic.ini`, `alembic/`) stay at the repository root.
"""

from __future__ import annotations

from pathlib import Path

from shared.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent


def alembic_ini() -> Path:
    """`alembic.ini` in the working directory (the image's /app), else in this checkout."""
    for candidate in (Path.cwd() / "alembic.ini", REPO_ROOT / "alembic.ini"):
        if candidate.exists():
            return candidate
    raise SystemExit("alembic.ini not found: run from the repository (or image) root")


def migrate(settings: Settings) -> None:
    """Upgrade `settings.database_url` to the newest revision (`alembic upgrade head`)."""
    from alembic.config import Config

    from alembic import command

    config = Config(str(alembic_ini()))
    config.attributes["database_url"] = settings.database_url
    command.upgrade(config, "head")
