"""executor snapshots: each partition's fold as of a position, and the finished-job index

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "executor_snapshots",
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("partition", sa.Integer(), primary_key=True),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("jobs", sa.Integer(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "executor_finished",
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("job_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("partition", sa.Integer(), nullable=False),
    )
    op.create_index("ix_executor_finished_partition", "executor_finished", ["topic", "partition"])
    op.create_table(
        "executor_owners",
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("bucket_name", sa.String(255), primary_key=True),
        sa.Column("job_id", UUID(as_uuid=True), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
    )
    op.create_index("ix_executor_owners_partition", "executor_owners", ["topic", "partition"])


def downgrade() -> None:
    op.drop_table("executor_owners")
    op.drop_table("executor_finished")
    op.drop_table("executor_snapshots")
