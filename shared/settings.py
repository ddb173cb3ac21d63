"""The one settings object, read from the environment (and `.env`) once per process."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.secret_files import read_secret_file

DEFAULT_DATABASE_URL = "postgresql+psycopg://akave:akave@127.0.0.1:5432/akave_gateway"


class Settings(BaseSettings):
    """Every knob of the gateway. Environment variable = field name in upper case."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Event log and database (every service)
    database_url: str = DEFAULT_DATABASE_URL
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    bucket_events_topic: str = "akave.bucket-events"
    dead_letter_topic: str = "akave.bucket-events.dlq"
    topic_partitions: int = Field(default=3, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    # min.insync.replicas of the topics the gateway creates; unset: min(2, replication factor),
    # so with 3 replicas an acknowledged write (acks=all) is on two brokers
    topic_min_insync_replicas: int | None = Field(default=None, ge=1)
    # How often every client re-reads the topic's metadata: new partitions are consumed (the
    # executors' group rebalances; the projector assigns them) within about this long.
    kafka_metadata_refresh_s: float = Field(default=30.0, gt=0)

    # API
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_workers: int = Field(default=1, ge=1)
    api_db_pool_size: int = Field(default=10, ge=1)  # per worker; requests queue for a connection
    append_timeout_s: float = Field(default=3.0, gt=0)
    db_timeout_s: float = Field(default=2.0, gt=0)
    read_your_writes_timeout_s: float = Field(default=3.0, ge=0)
    retry_after_s: int = Field(default=2, ge=1)
    # bounds what a projector that does not answer costs each idempotent POST
    idempotency_projection_wait_s: float = Field(default=0.5, ge=0)
    request_deadline_s: float = Field(default=4.0, gt=0)  # any request past it: 503

    # API: live job status (GET /buckets/jobs/{id}/events, Server-Sent Events)
    live_poll_interval_s: float = Field(default=0.5, gt=0)
    live_heartbeat_s: float = Field(default=15.0, gt=0)
    live_max_streams: int = Field(default=1000, ge=1)
    live_max_stream_s: float = Field(default=3600.0, gt=0)

    # API: security (API keys, rate limits, request size)
    max_body_bytes: int = Field(default=16 * 1024, ge=1)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    api_keys: str = ""
    api_keys_file: Path | None = None
    api_rate_limit_per_s: float = Field(default=10.0, ge=0)
    api_rate_limit_burst: int = Field(default=20, ge=1)

    # API: benchmark route (bench/): never enable in a deployment
    bench_noop_route: bool = False  # mount POST /bench/noop/buckets (validates, touches nothing)

    # Executor
    executor_group_id: str = "akave-executor"
    executor_concurrency: int = Field(default=4, ge=1)
    executor_max_pending: int = Field(default=10_000, ge=1)
    executor_session_timeout_ms: int = Field(default=10_000, ge=6_000)
    # A partition's snapshot is written this often while records arrive, and every
    # EXECUTOR_SNAPSHOT_RECORDS records while a partition is folded from an older position
    # (services/executor/snapshot.py): a start or a takeover reads only what came after it.
    executor_snapshot_interval_s: float = Field(default=10.0, gt=0)
    executor_snapshot_records: int = Field(default=50_000, ge=1)
    max_attempts: int = Field(default=3, ge=1)
    retry_delay_s: float = Field(default=10.0, ge=0)
    attempt_timeout_s: float = Field(default=600.0, gt=0)
    nonce_retry_limit: int = Field(default=5, ge=0)

    # Akave backend
    # evm: an EVM chain over JSON-RPC (`make run` starts anvil); akave: Akave's SDK
    akave_backend: Literal["akave", "evm"] = "evm"
    akave_node_address: str = "connect.akave.ai:5500"
    akave_private_key: SecretStr | None = None
    akave_private_key_file: Path | None = None
    akave_max_concurrency: int = Field(default=5, ge=1)
    akave_block_part_size: int = Field(default=1024 * 1024, ge=1, le=1024 * 1024)
    akave_use_connection_pool: bool = True
    akave_connection_timeout_s: int = Field(default=30, ge=1)

    # Chain (AKAVE_BACKEND=evm; services/executor/chain/). On Akave's network the RPC URL,
    # the Storage contract address and the chain id are what the Akave node's IPC
    # ConnectionParams returns (as its SDK reads them); locally, what `make run`'s anvil has.
    # The signing key: AKAVE_PRIVATE_KEY(_FILE), or a pool file with one key per line.
    chain_rpc_url: str = "http://127.0.0.1:8545"
    chain_contract_address: str = ""
    chain_id: int | None = Field(default=None, ge=1)  # None: ask the node (eth_chainId)
    chain_key_pool_file: Path | None = None
    chain_max_in_flight: int = Field(default=16, ge=1)  # per key: geth's guaranteed slots
    chain_confirmations: int = Field(default=1, ge=1)
    chain_replace_after_blocks: int = Field(default=3, ge=0)
    chain_fee_bump: float = Field(default=1.125, ge=1.125)
    chain_max_fee_gwei: float = Field(default=1000.0, gt=0)  # a replacement's ceiling
    chain_insufficient_funds_wait_s: float = Field(default=600.0, ge=0)
    chain_create_gas: int = Field(default=300_000, ge=21_000)
    chain_poll_interval_s: float = Field(default=0.5, gt=0)
    chain_rpc_timeout_s: float = Field(default=10.0, gt=0)
    # One signer per key across executors (chain/fence.py): Postgres advisory locks, checked
    # before each signing with this timeout, and every `watch` seconds while idle
    chain_fence_check_timeout_s: float = Field(default=2.0, gt=0)
    chain_fence_watch_s: float = Field(default=2.0, gt=0)
    # Lane status for /health: published this often; older than `stale` means stale
    chain_lane_status_interval_s: float = Field(default=2.0, gt=0)
    chain_lane_status_stale_s: float = Field(default=30.0, gt=0)

    # Webhooks (notifier)
    notifier_group_id: str = "akave-notifier"
    notifier_concurrency: int = Field(default=16, ge=1)
    notifier_session_timeout_ms: int = Field(default=10_000, ge=6_000)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_retry_base_s: float = Field(default=5.0, ge=0)
    webhook_retry_max_s: float = Field(default=3600.0, ge=0)
    webhook_retry_jitter: float = Field(default=0.2, ge=0, le=1)
    webhook_poll_interval_s: float = Field(default=1.0, gt=0)
    webhook_deny_targets: str = "169.254.0.0/16"

    # Metrics (Prometheus, docs/operations.md): the API answers /metrics on its own port; the
    # other services each serve /metrics on a port of their own, 0 = off
    api_metrics: bool = True  # off: no /metrics and no per-request counting (bench/)
    metrics_host: str = "127.0.0.1"
    executor_metrics_port: int = Field(default=9101, ge=0, le=65535)
    projector_metrics_port: int = Field(default=9102, ge=0, le=65535)
    notifier_metrics_port: int = Field(default=9103, ge=0, le=65535)

    # Logging
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "console"

    # Traces (OpenTelemetry, shared/tracing.py): the standard OTel variables. Export over
    # OTLP/HTTP is on only when the endpoint is set; the SDK reads the other OTEL_* itself.
    otel_exporter_otlp_endpoint: str | None = None
    otel_sdk_disabled: bool = False
    # Operator console (/console) and /health (docs/operations.md)
    console_session_s: int = Field(default=8 * 3600, ge=60)  # the login cookie's lifetime
    console_list_limit: int = Field(default=50, ge=1, le=1000)  # rows per console table
    health_max_projector_lag: int = Field(default=1000, ge=0)  # more: /health is "degraded"

    @field_validator(
        "akave_private_key",
        "akave_private_key_file",
        "chain_key_pool_file",
        "chain_id",
        "api_keys_file",
        "otel_exporter_otlp_endpoint",
        mode="before",
    )
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

    @model_validator(mode="after")
    def _min_insync_within_replicas(self) -> Settings:
        """More in-sync replicas than replicas would refuse every write."""
        if self.min_insync_replicas > self.topic_replication_factor:
            raise ValueError(
                f"TOPIC_MIN_INSYNC_REPLICAS ({self.topic_min_insync_replicas}) exceeds "
                f"TOPIC_REPLICATION_FACTOR ({self.topic_replication_factor}): every write "
                "would be refused"
            )
        return self

    @property
    def min_insync_replicas(self) -> int:
        """TOPIC_MIN_INSYNC_REPLICAS, or min(2, TOPIC_REPLICATION_FACTOR) when unset."""
        if self.topic_min_insync_replicas is not None:
            return self.topic_min_insync_replicas
        return min(2, self.topic_replication_factor)

    def private_key(self) -> str | None:
        """The signing key, from AKAVE_PRIVATE_KEY or the file AKAVE_PRIVATE_KEY_FILE names.

        Raises `InsecureSecretFile` (a `PermissionError`) if that file is group/other-accessible.
        """
        if self.akave_private_key is not None:
            return self.akave_private_key.get_secret_value().strip() or None
        if self.akave_private_key_file is not None:
            return read_secret_file(self.akave_private_key_file, "AKAVE_PRIVATE_KEY_FILE") or None
        return None
