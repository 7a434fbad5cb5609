"""Document exchange: encrypted content, master-key checks, shares with recipients, outbox.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

RowKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("blob_id", sa.String(36), primary_key=True),
        sa.Column("owner_org", sa.String(128), nullable=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("sha1", sa.String(28), nullable=False),
        sa.Column("chunk_size", sa.Integer, nullable=False),
        sa.Column("chunks", sa.Integer, nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
        sa.Column("deprecated_us", sa.BigInteger, nullable=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_blobs_key_id", "blobs", ["key_id"])
    op.create_table(
        "blob_chunks",
        sa.Column("blob_id", sa.String(36), sa.ForeignKey("blobs.blob_id"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "master_key_checks",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("sealed_check", sa.LargeBinary, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "resource_shares",
        sa.Column("rid", RowKey, sa.ForeignKey("resources.rid"), primary_key=True),
        sa.Column("org_ura", sa.String(128), primary_key=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_resource_shares_org", "resource_shares", ["org_ura", "rid"])
    with op.batch_alter_table("resources") as table:
        table.add_column(sa.Column("sealed", sa.Boolean, nullable=False, server_default=sa.false()))
    with op.batch_alter_table("resource_versions") as table:
        table.add_column(sa.Column("sealed", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "outbox",
        sa.Column("delivery_id", sa.String(36), primary_key=True),
        sa.Column("sender_org", sa.String(32), nullable=False),
        sa.Column("recipient_org", sa.String(32), nullable=False),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_us", sa.BigInteger, nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_until_us", sa.BigInteger, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("delivered_us", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_us"])


def downgrade() -> None:
    op.drop_index("ix_outbox_due", "outbox")
    op.drop_table("outbox")
    with op.batch_alter_table("resource_versions") as table:
        table.drop_column("sealed")
    with op.batch_alter_table("resources") as table:
        table.drop_column("sealed")
    op.drop_index("ix_resource_shares_org", "resource_shares")
    op.drop_table("resource_shares")
    op.drop_table("master_key_checks")
    op.drop_table("blob_chunks")
    op.drop_index("ix_blobs_key_id", "blobs")
    op.drop_table("blobs")
