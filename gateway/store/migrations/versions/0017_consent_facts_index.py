"""SQLite: what consent judges of a resource (owner, patient, category, date) in a narrow index
by row key, which the searches read instead of the whole row when they judge another
organisation's matches (gateway.store.schema.CONSENT_FACTS_INDEX).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-26
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

INDEX = "ix_resources_consent_facts"
COLUMNS = ["rid", "patient_key", "owner_org", "data_category", "data_date_us"]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_index(INDEX, "resources", COLUMNS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index(INDEX, "resources")
