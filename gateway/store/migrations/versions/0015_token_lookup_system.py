"""The token lookup index holds the system after the code: a search by ``system|code`` (the
usual form of a code or an identifier) takes its matches from the index alone instead of
reading each match's index row for the system (Observation?code=http://loinc.org|718-7 over
100,000 resources, 8,000 matches: the page 8.0 -> 2.1 ms on SQLite, the count 7.1 -> 4.6 ms on
PostgreSQL).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-25
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

BEFORE = ["res_type", "param", "code", "rid", "owner_org"]
AFTER = ["res_type", "param", "code", "system", "rid", "owner_org"]


def upgrade() -> None:
    op.drop_index("ix_idx_token_lookup", "idx_token")
    op.create_index("ix_idx_token_lookup", "idx_token", AFTER)


def downgrade() -> None:
    op.drop_index("ix_idx_token_lookup", "idx_token")
    op.create_index("ix_idx_token_lookup", "idx_token", BEFORE)
