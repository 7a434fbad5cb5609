"""Shares are now always found by their key (rid, organisation): the per-organisation index
served only the IN list of an organisation's whole inbox, which searches no longer build.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_resource_shares_org", "resource_shares")


def downgrade() -> None:
    op.create_index("ix_resource_shares_org", "resource_shares", ["org_ura", "rid"])
