"""Persistence: SQLAlchemy Core over SQLite or PostgreSQL, schema managed by Alembic."""

from gateway.store.database import Database

__all__ = ["Database"]
