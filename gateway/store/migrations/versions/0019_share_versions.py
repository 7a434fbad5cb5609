"""A share is of the version that was sent (resource_shares.version, .latest): a later version
the sender writes is not the recipient's copy and needs consent. The shares made before are of
the version current now; notification Tasks stay live (both sides write them).

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("resource_shares") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("latest", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    op.execute(
        "UPDATE resource_shares SET version = (SELECT r.version FROM resources r "
        "WHERE r.rid = resource_shares.rid AND r.res_type <> 'Task')"
    )


def downgrade() -> None:
    with op.batch_alter_table("resource_shares") as batch:
        batch.drop_column("latest")
        batch.drop_column("version")
