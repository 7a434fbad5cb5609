"""IHE MHD's own search parameters (ITI-67 ``creation`` on DocumentReference, ITI-66
``designationType`` and ``sourceId`` on List) and the gateway's ``security-context`` of a
Binary: the index rows of the resources stored before, written here as the gateway writes them
for a new one. (A Binary stored before with a security context stays closed to partners until
that context is written again: the gateway did not take a patient from it then.)

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-26
"""

import orjson
import sqlalchemy as sa
from alembic import op

from gateway.fhir.indexing import index_resource
from gateway.fhir.search_params import (
    GATEWAY_SEARCH_PARAMETERS,
    MHD_SEARCH_PARAMETERS,
    registry,
)

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

# Index table and its value columns, by search parameter type.
TABLES = {
    "date": ("idx_date", ("lo", "hi")),
    "token": ("idx_token", ("system", "code")),
    "reference": ("idx_reference", ("target_type", "target_id", "url")),
}
PARAMETERS = (*MHD_SEARCH_PARAMETERS, *GATEWAY_SEARCH_PARAMETERS)


def upgrade() -> None:
    conn = op.get_bind()
    for param in PARAMETERS:
        table, columns = TABLES[param["type"]]
        stored = conn.execute(
            sa.text(
                "SELECT rid, owner_org, content FROM resources "
                "WHERE res_type = :res_type AND deleted = :false"
            ),
            {"res_type": param["resource"], "false": False},
        )
        rows = [
            row | {"rid": rid, "owner_org": owner}
            for rid, owner, content in stored
            for row in getattr(index_resource(orjson.loads(content), registry()), param["type"])
            if row["param"] == param["code"]
        ]
        if rows:
            names = ", ".join(("rid", "res_type", "param", "owner_org", *columns))
            values = ", ".join(f":{c}" for c in ("rid", "res_type", "param", "owner_org", *columns))
            conn.execute(sa.text(f"INSERT INTO {table} ({names}) VALUES ({values})"), rows)  # noqa: S608 - our own names


def downgrade() -> None:
    for param in PARAMETERS:
        table, _columns = TABLES[param["type"]]
        op.execute(
            sa.text(f"DELETE FROM {table} WHERE res_type = :res_type AND param = :code").bindparams(  # noqa: S608
                res_type=param["resource"], code=param["code"]
            )
        )
