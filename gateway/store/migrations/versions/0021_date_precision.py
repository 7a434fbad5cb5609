"""Date index rows as the gateway writes them since its dates cover their precision: a value
with a fraction of a second covered one microsecond (``.123`` now covers the millisecond), and
a date in the year 9999 had no row at all. Rewritten here for the resources concerned: those
with a row of one microsecond, and those whose JSON holds a value starting with 9999.

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-26
"""

import orjson
import sqlalchemy as sa
from alembic import op

from gateway.fhir.indexing import index_resource
from gateway.fhir.search_params import registry

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

# The resources' JSON is stored as bytes: each database searches it for the year its own way.
HOLDS_9999 = {
    "postgresql": "position(convert_to('\"9999', 'UTF8') in content) > 0",
    "sqlite": "instr(content, CAST('\"9999' AS BLOB)) > 0",
}


def upgrade() -> None:
    conn = op.get_bind()
    concerned = conn.execute(
        sa.text(
            "SELECT rid, owner_org, content FROM resources WHERE deleted = :false AND ("  # noqa: S608 - our own SQL
            "rid IN (SELECT rid FROM idx_date WHERE lo = hi) OR "
            f"{HOLDS_9999[conn.dialect.name]})"
        ),
        {"false": False},
    ).all()
    for rid, owner, content in concerned:
        rows = index_resource(orjson.loads(content), registry()).date
        conn.execute(sa.text("DELETE FROM idx_date WHERE rid = :rid"), {"rid": rid})
        if rows:
            conn.execute(
                sa.text(
                    "INSERT INTO idx_date (rid, res_type, param, owner_org, lo, hi) "
                    "VALUES (:rid, :res_type, :param, :owner_org, :lo, :hi)"
                ),
                [row | {"rid": rid, "owner_org": owner} for row in rows],
            )


def downgrade() -> None:
    """Nothing to undo: the rows of the older gateway were the wrong ones."""
