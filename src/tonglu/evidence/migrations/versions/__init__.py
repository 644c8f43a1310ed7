"""Revisions, oldest first: 0001_initial.py, then one file per schema change.

New revisions go here, `down_revision` naming the newest before them (a single head):
0001_initial (index, web, source tokens, PostgreSQL transcription queue), 0002_jobs (evidence/jobs.py).
"""
