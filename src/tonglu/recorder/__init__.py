"""WHIP ingest and pass-through recording: aiortc peers (private seams in `recorder.aiortc`),
segmenting at keyframes without re-encoding, gap detection, clock mapping, sealing into the
evidence store, WHEP live relay, remote participants, recorder worker processes and the router
that sends each session to its worker. Imports `tonglu.config` and `tonglu.evidence` only.
"""
