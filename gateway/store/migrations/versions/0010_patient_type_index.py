"""Resources of one patient by type: the consents of a patient, their Patient records and a
type's resources of a patient were found by reading every resource of the patient (a patient
with thousands of documents made each consent-checked call read thousands of rows).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_resources_patient_key", "resources")
    op.create_index(
        "ix_resources_patient_key", "resources", ["patient_key", "res_type", "owner_org"]
    )


def downgrade() -> None:
    op.drop_index("ix_resources_patient_key", "resources")
    op.create_index("ix_resources_patient_key", "resources", ["patient_key", "owner_org"])
