"""Certificate-bound system clients: the SHA-256 thumbprint of the client's TLS certificate.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("system_clients") as table:
        table.add_column(sa.Column("cert_thumbprint", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("system_clients") as table:
        table.drop_column("cert_thumbprint")
