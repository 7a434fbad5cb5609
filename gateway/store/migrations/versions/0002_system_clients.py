"""System clients (SMART Backend Services), used client assertions, token signing secrets.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "system_clients",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("org_ura", sa.String(32), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("jwks", sa.Text, nullable=True),
        sa.Column("jwks_url", sa.Text, nullable=True),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "used_assertions",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("jti", sa.String(255), primary_key=True),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_used_assertions_expires", "used_assertions", ["expires_us"])
    op.create_table(
        "token_secrets",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("secret", sa.LargeBinary, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("token_secrets")
    op.drop_index("ix_used_assertions_expires", "used_assertions")
    op.drop_table("used_assertions")
    op.drop_table("system_clients")
