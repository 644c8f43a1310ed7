"""Revisions, oldest first: 0001_initial.py, then one file per schema change.

New revisions go here, `down_revision` naming the newest before them (a single head). The generic
`jobs` table (evidence/jobs.py JOBS_METADATA) gets its revision, 0002, when that work is merged.
"""
