"""Signed checkpoints: the Merkle root of a session's first `tree_size` manifest entries.

The signed bytes are the canonical encoding of the body; the signature travels beside it:

    {"body": {...}, "signature": "<base64 Ed25519>"}

`digest` is the short, human-checkable form read aloud and signed on paper by the participants.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from tonglu.evidence import canonical
from tonglu.evidence.errors import CanonicalError, ManifestError
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.verify_core import CHECKPOINT_VERSION, GENESIS


def human_digest(body_bytes: bytes) -> str:
    """First 80 bits of SHA-256 of the body in 4 groups of Crockford-free uppercase hex."""
    h = hashlib.sha256(body_bytes).hexdigest().upper()[:20]
    return "-".join(h[i : i + 5] for i in range(0, 20, 5))


@dataclass(frozen=True)
class Checkpoint:
    session: str
    tree_size: int
    root: str  # hex Merkle root over entries [0, tree_size)
    head: str  # hex hash of entry tree_size-1 (GENESIS when empty): ties the tree to the chain
    time_ns: int
    key_id: str
    prev_checkpoint: str  # sha256 of the previous checkpoint's body bytes, GENESIS for the first
    final: bool
    signature: bytes = b""

    def body(self) -> dict[str, Any]:
        return {
            "v": CHECKPOINT_VERSION,
            "session": self.session,
            "tree_size": self.tree_size,
            "root": self.root,
            "head": self.head,
            "time_ns": self.time_ns,
            "key_id": self.key_id,
            "prev_checkpoint": self.prev_checkpoint,
            "final": self.final,
        }

    def body_bytes(self) -> bytes:
        return canonical.encode(self.body())

    @property
    def body_hash(self) -> str:
        return hashlib.sha256(self.body_bytes()).hexdigest()

    @property
    def digest(self) -> str:
        return human_digest(self.body_bytes())

    def to_bytes(self) -> bytes:
        return canonical.encode({"body": self.body(), "signature": base64.b64encode(self.signature).decode()})

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        try:
            doc = canonical.decode(data)
        except CanonicalError as exc:
            raise ManifestError(f"checkpoint: {exc}") from exc
        if not isinstance(doc, dict) or set(doc) != {"body", "signature"}:
            raise ManifestError("checkpoint must have exactly 'body' and 'signature'")
        body = doc["body"]
        expected = {"v", "session", "tree_size", "root", "head", "time_ns", "key_id", "prev_checkpoint", "final"}
        if not isinstance(body, dict) or set(body) != expected:
            raise ManifestError("checkpoint body fields malformed")
        if body["v"] != CHECKPOINT_VERSION:
            raise ManifestError(f"unsupported checkpoint version {body['v']!r}")
        try:
            signature = base64.b64decode(doc["signature"], validate=True)
        except (ValueError, TypeError) as exc:
            raise ManifestError(f"checkpoint signature is not base64: {exc}") from exc
        return cls(
            session=body["session"],
            tree_size=body["tree_size"],
            root=body["root"],
            head=body["head"],
            time_ns=body["time_ns"],
            key_id=body["key_id"],
            prev_checkpoint=body["prev_checkpoint"],
            final=bool(body["final"]),
            signature=signature,
        )


def sign_checkpoint(
    key: SiteKey,
    *,
    session: str,
    tree_size: int,
    root: bytes,
    head: str,
    now_ns: int,
    prev_checkpoint: str = GENESIS,
    final: bool = False,
) -> Checkpoint:
    unsigned = Checkpoint(session, tree_size, root.hex(), head, now_ns, key.key_id, prev_checkpoint, final)
    return Checkpoint(**{**unsigned.__dict__, "signature": key.sign(unsigned.body_bytes())})
