"""The one settings object, read from the environment (and `.env`) once per process."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql+psycopg://akave:akave@127.0.0.1:5432/akave_gateway"


class Settings(BaseSettings):
    """Every knob of the gateway. Environment variable = field name in upper case."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Infrastructure
    database_url: str = DEFAULT_DATABASE_URL
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    bucket_events_topic: str = "akave.bucket-events"
    dead_letter_topic: str = "akave.bucket-events.dlq"
    topic_partitions: int = Field(default=3, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)

    # API
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_workers: int = Field(default=1, ge=1)
    append_timeout_s: float = Field(default=3.0, gt=0)
    db_timeout_s: float = Field(default=2.0, gt=0)
    read_your_writes_timeout_s: float = Field(default=3.0, ge=0)
    retry_after_s: int = Field(default=2, ge=1)
    # Performance (bench/, docs/benchmarks.md)
    api_db_pool_size: int = Field(default=10, ge=1)  # per worker; requests queue for a connection

    # Executor
    executor_group_id: str = "akave-executor"
    executor_concurrency: int = Field(default=4, ge=1)
    executor_max_pending: int = Field(default=10_000, ge=1)
    executor_session_timeout_ms: int = Field(default=10_000, ge=6_000)
    max_attempts: int = Field(default=3, ge=1)
    retry_delay_s: float = Field(default=10.0, ge=0)
    attempt_timeout_s: float = Field(default=600.0, gt=0)
    nonce_retry_limit: int = Field(default=5, ge=0)

    # Akave backend
    akave_backend: Literal["simulated", "akave"] = "simulated"
    akave_node_address: str = "connect.akave.ai:5500"
    akave_private_key: SecretStr | None = None
    akave_private_key_file: Path | None = None
    akave_max_concurrency: int = Field(default=5, ge=1)
    akave_block_part_size: int = Field(default=1024 * 1024, ge=1, le=1024 * 1024)
    akave_use_connection_pool: bool = True
    akave_connection_timeout_s: int = Field(default=30, ge=1)

    # Simulated chain
    sim_owner: str = "simulated-owner"
    sim_latency_ms: int = Field(default=500, ge=0)
    sim_transient_failure_rate: float = Field(default=0.0, ge=0, le=1)
    sim_permanent_error: Literal["", "insufficient_funds", "invalid_bucket_name"] = ""

    # Benchmarks (bench/): never enable in a deployment
    bench_noop_route: bool = False  # mount POST /bench/noop/buckets (validates, touches nothing)

    # Logging
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "console"

    @field_validator("akave_private_key", "akave_private_key_file", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """`AKAVE_PRIVATE_KEY=` in a .env file means "not set", not "an empty key"."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _psycopg_driver(cls, value: str) -> str:
        """Accept the plain libpq URL forms, always use the psycopg 3 driver."""
        for prefix in ("postgresql://", "postgres://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    def private_key(self) -> str | None:
        """The signing key, from AKAVE_PRIVATE_KEY or the file AKAVE_PRIVATE_KEY_FILE names."""
        if self.akave_private_key is not None:
            return self.akave_private_key.get_secret_value().strip() or None
        if self.akave_private_key_file is not None:
            return self.akave_private_key_file.read_text().strip() or None
        return None
