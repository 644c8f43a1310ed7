"""The individual checks of the gap analysis; each is a pure function returning findings."""
