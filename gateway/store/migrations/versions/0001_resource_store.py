"""Resource store: current resources, versions, conditional claims, search index.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

RowKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NormalizedText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "resources",
        sa.Column("rid", RowKey, primary_key=True, autoincrement=True),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("last_updated_us", sa.BigInteger, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=True),
        sa.Column("owner_org", sa.String(128), nullable=True),
        sa.Column("patient_ref", sa.String(140), nullable=True),
        sa.UniqueConstraint("res_type", "res_id", name="uq_resources_type_id"),
    )
    op.create_index("ix_resources_type_updated", "resources", ["res_type", "last_updated_us"])
    op.create_index("ix_resources_patient", "resources", ["patient_ref"])

    op.create_table(
        "resource_versions",
        sa.Column("vpk", RowKey, primary_key=True, autoincrement=True),
        sa.Column("rid", RowKey, sa.ForeignKey("resources.rid"), nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("last_updated_us", sa.BigInteger, nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=True),
        sa.Column("owner_org", sa.String(128), nullable=True),
        sa.UniqueConstraint("res_type", "res_id", "version", name="uq_versions_type_id_version"),
    )
    op.create_index("ix_versions_type_vpk", "resource_versions", ["res_type", "vpk"])

    op.create_table(
        "conditional_claims",
        sa.Column("res_type", sa.String(64), primary_key=True),
        sa.Column("query_key", sa.String(64), primary_key=True),
        sa.Column("res_id", sa.String(64), nullable=False),
    )

    index_columns: dict[str, list[sa.Column]] = {  # type: ignore[type-arg]
        "idx_string": [
            sa.Column("value_norm", NormalizedText, nullable=False),
            sa.Column("value", sa.Text, nullable=False),
        ],
        "idx_token": [
            sa.Column("system", sa.Text, nullable=True),
            sa.Column("code", sa.Text, nullable=False),
        ],
        "idx_date": [
            sa.Column("lo", sa.BigInteger, nullable=False),
            sa.Column("hi", sa.BigInteger, nullable=False),
        ],
        "idx_reference": [
            sa.Column("target_type", sa.String(64), nullable=True),
            sa.Column("target_id", sa.String(64), nullable=True),
            sa.Column("url", sa.Text, nullable=True),
        ],
    }
    for name, columns in index_columns.items():
        op.create_table(
            name,
            sa.Column("rid", RowKey, sa.ForeignKey("resources.rid"), nullable=False),
            sa.Column("res_type", sa.String(64), nullable=False),
            sa.Column("param", sa.String(64), nullable=False),
            *columns,
        )
        op.create_index(f"ix_{name}_rid", name, ["rid"])
    op.create_index("ix_idx_string_lookup", "idx_string", ["res_type", "param", "value_norm"])
    op.create_index("ix_idx_token_lookup", "idx_token", ["res_type", "param", "code"])
    op.create_index("ix_idx_date_lookup", "idx_date", ["res_type", "param", "lo", "hi"])
    op.create_index("ix_idx_reference_lookup", "idx_reference", ["res_type", "param", "target_id"])
    op.create_index("ix_idx_reference_target", "idx_reference", ["target_type", "target_id"])


def downgrade() -> None:
    for name in ("idx_reference", "idx_date", "idx_token", "idx_string"):
        op.drop_table(name)
    op.drop_table("conditional_claims")
    op.drop_table("resource_versions")
    op.drop_table("resources")
