"""Object key layout in the buckets. One place, so every writer and reader agree.

Evidence bucket (Object Lock, COMPLIANCE):
    sessions/{sid}/manifest/{seq:08d}.json
    sessions/{sid}/segments/{source}/{track}/{index:08d}.{ext}
    sessions/{sid}/checkpoints/{ordinal:08d}.json   (n-th checkpoint of the session)
    sessions/{sid}/transcripts/{version:04d}.json
    site/keys/{key_id}.pem
Work bucket (no lock): sessions/{sid}/workcopy/..., derivatives.
"""

from __future__ import annotations

import re

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

CONTAINER_EXT = {"webm": "webm", "mpegts": "ts", "mka": "mka", "ogg": "ogg", "matroska": "mkv"}


def safe_id(value: str, what: str = "id") -> str:
    """Refuse ids that could escape a key prefix or a spool directory."""
    if not _SAFE.match(value) or ".." in value:
        raise ValueError(f"unsafe {what}: {value!r}")
    return value


def session_prefix(sid: str) -> str:
    return f"sessions/{safe_id(sid, 'session id')}/"


def manifest_key(sid: str, seq: int) -> str:
    return f"{session_prefix(sid)}manifest/{seq:08d}.json"


def segment_key(sid: str, source: str, track: str, index: int, container: str) -> str:
    ext = CONTAINER_EXT.get(container, container)
    return f"{session_prefix(sid)}segments/{safe_id(source, 'source')}/{safe_id(track, 'track')}/{index:08d}.{ext}"


def checkpoint_key(sid: str, ordinal: int) -> str:
    return f"{session_prefix(sid)}checkpoints/{ordinal:08d}.json"


def transcript_key(sid: str, version: int) -> str:
    return f"{session_prefix(sid)}transcripts/{version:04d}.json"


def public_key_key(key_id: str) -> str:
    return f"site/keys/{safe_id(key_id, 'key id')}.pem"
