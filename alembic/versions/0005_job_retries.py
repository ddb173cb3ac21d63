"""job retries (retry_of) and the console's index of recent changes

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("bucket_jobs", sa.Column("retry_of", postgresql.UUID(as_uuid=True)))
    op.create_index("ix_bucket_jobs_updated_at", "bucket_jobs", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_bucket_jobs_updated_at", table_name="bucket_jobs")
    op.drop_column("bucket_jobs", "retry_of")
