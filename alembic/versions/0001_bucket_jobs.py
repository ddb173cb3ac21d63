"""bucket_jobs read model and projector checkpoints

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bucket_jobs",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("bucket_name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(50), nullable=False),
        sa.Column("tx_hash", sa.String(255)),
        sa.Column("error", sa.Text()),
        sa.Column("error_code", sa.String(100)),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_bucket_jobs_status", "bucket_jobs", ["status"])
    op.create_index("ix_bucket_jobs_created_at", "bucket_jobs", ["created_at"])
    op.create_index("ix_bucket_jobs_bucket_name", "bucket_jobs", ["bucket_name"])
    op.create_index(
        "uq_bucket_jobs_completed_name",
        "bucket_jobs",
        ["bucket_name"],
        unique=True,
        postgresql_where=sa.text("status = 'completed'"),
    )
    op.create_index("ix_bucket_jobs_completed_at_id", "bucket_jobs", ["completed_at", "id"])
    op.create_table(
        "projector_checkpoints",
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("partition", sa.Integer(), primary_key=True),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
        ),
    )


def downgrade() -> None:
    op.drop_table("projector_checkpoints")
    op.drop_table("bucket_jobs")
