"""Emergencies are found by patient on every consent decision: index them by patient, in the
order the decision reads them.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_emergencies_patient", "emergencies", ["patient_key", "start_us"])


def downgrade() -> None:
    op.drop_index("ix_emergencies_patient", "emergencies")
