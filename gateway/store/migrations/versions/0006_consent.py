"""Consent: what each resource is (patient, data category, clinical date), the consent and
agreement conditions as rows, emergencies, and shares that wait for their delivery.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("resources") as table:
        table.add_column(sa.Column("patient_key", sa.String(32), nullable=True))
        table.add_column(sa.Column("data_category", sa.String(48), nullable=True))
        table.add_column(sa.Column("data_date_us", sa.BigInteger, nullable=True))
    op.create_index("ix_resources_patient_key", "resources", ["patient_key", "owner_org"])
    op.create_table(
        "data_category_lineage",
        sa.Column("leaf", sa.String(48), primary_key=True),
        sa.Column("category", sa.String(48), primary_key=True),
    )
    op.create_table(
        "consent_grants",
        sa.Column("patient_key", sa.String(32), nullable=False),
        sa.Column("grantee_org", sa.String(32), nullable=False),
        sa.Column("holder_org", sa.String(32), nullable=False),
        sa.Column("category", sa.String(48), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("valid_from_us", sa.BigInteger, nullable=False),
        sa.Column("valid_to_us", sa.BigInteger, nullable=False),
        sa.Column("data_from_us", sa.BigInteger, nullable=False),
        sa.Column("data_to_us", sa.BigInteger, nullable=False),
        sa.Column("covers_dated", sa.Boolean, nullable=False),
        sa.Column("covers_undated", sa.Boolean, nullable=False),
        sa.Column("consent_ids", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_consent_grants_lookup", "consent_grants", ["patient_key", "grantee_org", "holder_org"]
    )
    op.create_table(
        "consent_named_holders",
        sa.Column("patient_key", sa.String(32), primary_key=True),
        sa.Column("holder_org", sa.String(32), primary_key=True),
    )
    op.create_table(
        "agreement_grants",
        sa.Column("holder_org", sa.String(32), nullable=False),
        sa.Column("grantee_org", sa.String(32), nullable=False),
        sa.Column("category", sa.String(48), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("valid_from_us", sa.BigInteger, nullable=False),
        sa.Column("valid_to_us", sa.BigInteger, nullable=False),
        sa.Column("agreement_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_agreement_grants_lookup", "agreement_grants", ["grantee_org", "holder_org"])
    op.create_table(
        "emergencies",
        sa.Column("emergency_id", sa.String(36), primary_key=True),
        sa.Column("actor_id", sa.String(64), nullable=False),
        sa.Column("actor_org", sa.String(32), nullable=False),
        sa.Column("patient_key", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("start_us", sa.BigInteger, nullable=False),
        sa.Column("end_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_emergencies_actor", "emergencies", ["actor_id", "end_us"])
    with op.batch_alter_table("resource_shares") as table:
        table.add_column(sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()))
        table.add_column(sa.Column("delivery_id", sa.String(36), nullable=True))
    op.create_index("ix_resource_shares_delivery", "resource_shares", ["delivery_id"])


def downgrade() -> None:
    op.drop_index("ix_resource_shares_delivery", "resource_shares")
    with op.batch_alter_table("resource_shares") as table:
        table.drop_column("delivery_id")
        table.drop_column("active")
    op.drop_index("ix_emergencies_actor", "emergencies")
    op.drop_table("emergencies")
    op.drop_index("ix_agreement_grants_lookup", "agreement_grants")
    op.drop_table("agreement_grants")
    op.drop_table("consent_named_holders")
    op.drop_index("ix_consent_grants_lookup", "consent_grants")
    op.drop_table("consent_grants")
    op.drop_table("data_category_lineage")
    op.drop_index("ix_resources_patient_key", "resources")
    with op.batch_alter_table("resources") as table:
        table.drop_column("data_date_us")
        table.drop_column("data_category")
        table.drop_column("patient_key")
