"""The audit trail: hash-chained AuditEvents, the chain's head, signed checkpoints; triggers
that make events and checkpoints append-only (a purge lifts them for its own transaction).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

APPEND_ONLY = ("audit_events", "audit_checkpoints")


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("recorded_us", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("action", sa.String(1), nullable=False),
        sa.Column("outcome", sa.String(2), nullable=False),
        sa.Column("agent_kind", sa.String(8), nullable=False),
        sa.Column("agent_id", sa.String(200), nullable=False),
        sa.Column("agent_org", sa.String(128), nullable=True),
        sa.Column("agent_role", sa.String(32), nullable=True),
        sa.Column("patient_key", sa.String(32), nullable=True),
        sa.Column("custodian_org", sa.String(128), nullable=True),
        sa.Column("emergency", sa.Boolean, nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_audit_events_patient", "audit_events", ["patient_key", "recorded_us"])
    op.create_index("ix_audit_events_agent_org", "audit_events", ["agent_org", "recorded_us"])
    op.create_index("ix_audit_events_custodian", "audit_events", ["custodian_org", "recorded_us"])
    op.create_index("ix_audit_events_recorded", "audit_events", ["recorded_us"])
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
        sa.Column("checkpoint_seq", sa.BigInteger, nullable=False),
        sa.Column("checkpoint_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("hash", sa.LargeBinary, nullable=False),
        sa.Column("recorded_us", sa.BigInteger, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
    )
    op.bulk_insert(
        sa.table(
            "audit_chain_head",
            sa.column("id", sa.Integer),
            sa.column("seq", sa.BigInteger),
            sa.column("hash", sa.LargeBinary),
            sa.column("checkpoint_seq", sa.BigInteger),
            sa.column("checkpoint_us", sa.BigInteger),
        ),
        [{"id": 1, "seq": 0, "hash": bytes(32), "checkpoint_seq": 0, "checkpoint_us": 0}],
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION zorgbrug_audit_append_only() RETURNS trigger AS $$
            BEGIN
                IF TG_OP = 'DELETE' AND current_setting('zorgbrug.audit_purge', true) = 'on' THEN
                    RETURN OLD;
                END IF;
                RAISE EXCEPTION 'audit records are append-only (% on %)', TG_OP, TG_TABLE_NAME;
            END
            $$ LANGUAGE plpgsql
            """
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION zorgbrug_audit_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION zorgbrug_audit_append_only()"
            )
    else:
        for table in APPEND_ONLY:
            for statement in sqlite_triggers(table):
                op.execute(statement)


def sqlite_triggers(table: str) -> list[str]:
    """The SQLite triggers that keep ``table`` append-only (a purge drops and recreates the
    delete trigger inside its own transaction)."""
    return [
        f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END"
        for verb in ("UPDATE", "DELETE")
    ]


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS zorgbrug_audit_append_only()")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_chain_head")
    op.drop_table("audit_events")
