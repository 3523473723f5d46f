"""Persistence: SQLAlchemy models, repositories and Alembic migrations (SQLite or PostgreSQL)."""

from portway.store.database import Database

__all__ = ["Database"]
