"""webhook deliveries keep the trace context of the event they deliver

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("webhook_deliveries", sa.Column("traceparent", sa.String(55)))


def downgrade() -> None:
    op.drop_column("webhook_deliveries", "traceparent")
