"""Practitioner is searchable by ``family`` and ``given``, as Patient is: the index rows of the
Practitioners stored before, written here as the gateway writes them for a new one.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-26
"""

import orjson
import sqlalchemy as sa
from alembic import op

from gateway.fhir.indexing import index_resource
from gateway.fhir.search_params import registry

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

PARAMS = ("family", "given")


def upgrade() -> None:
    conn = op.get_bind()
    practitioners = conn.execute(
        sa.text(
            "SELECT rid, owner_org, content FROM resources "
            "WHERE res_type = 'Practitioner' AND deleted = :false"
        ),
        {"false": False},
    )
    rows = [
        row | {"rid": rid, "owner_org": owner}
        for rid, owner, content in practitioners
        for row in index_resource(orjson.loads(content), registry()).string
        if row["param"] in PARAMS
    ]
    if rows:
        conn.execute(
            sa.text(
                "INSERT INTO idx_string (rid, res_type, param, owner_org, value_norm, value) "
                "VALUES (:rid, :res_type, :param, :owner_org, :value_norm, :value)"
            ),
            rows,
        )


def downgrade() -> None:
    op.execute(
        "DELETE FROM idx_string WHERE res_type = 'Practitioner' AND param IN ('family', 'given')"
    )
