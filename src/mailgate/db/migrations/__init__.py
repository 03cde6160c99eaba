"""Alembic migrations of mailgate's database (run by `mailgate.db.migrate`, not by a CLI)."""
