"""Alembic migrations of the index database (evidence/migrate.py runs them; versions/ holds the revisions)."""
