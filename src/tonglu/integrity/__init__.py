"""Integrity review: gap analysis, explanations, the exclusion-review report, working copy and the
court export package.

Pure logic (``session``, ``analysis``/``checks``, ``findings``) is sans-I/O: it takes manifest
entries, a verification summary and ``now`` and returns typed findings. Adapters (``loader``,
``workcopy``, ``export``, ``pdf``) do the I/O.
"""
