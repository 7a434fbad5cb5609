"""Consent columns per version: an old version is judged on its own patient, data category and
clinical date, not on the current version's. Versions written before this revision take the
current version's values (the best that is known of them).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = ("patient_key", "patient_ref", "data_category", "data_date_us")


def upgrade() -> None:
    with op.batch_alter_table("resource_versions") as table:
        table.add_column(sa.Column("patient_key", sa.String(32), nullable=True))
        table.add_column(sa.Column("patient_ref", sa.String(140), nullable=True))
        table.add_column(sa.Column("data_category", sa.String(48), nullable=True))
        table.add_column(sa.Column("data_date_us", sa.BigInteger, nullable=True))
    op.create_index("ix_versions_patient", "resource_versions", ["patient_ref"])
    op.execute(
        """
        UPDATE resource_versions SET
            patient_key =
                (SELECT r.patient_key FROM resources r WHERE r.rid = resource_versions.rid),
            patient_ref =
                (SELECT r.patient_ref FROM resources r WHERE r.rid = resource_versions.rid),
            data_category =
                (SELECT r.data_category FROM resources r WHERE r.rid = resource_versions.rid),
            data_date_us =
                (SELECT r.data_date_us FROM resources r WHERE r.rid = resource_versions.rid)
        """
    )


def downgrade() -> None:
    op.drop_index("ix_versions_patient", "resource_versions")
    with op.batch_alter_table("resource_versions") as table:
        for column in COLUMNS:
            table.drop_column(column)
