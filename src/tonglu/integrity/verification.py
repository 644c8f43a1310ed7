"""The verifier's verdict, reduced to what the integrity review needs.

The verifier itself is `storage.verify_core` (standard library only, shipped in export packages);
this module runs it over one session and keeps ok/problems/checkpoint digests as plain values so
the analysis stays sans-I/O and testable with hand-made summaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tonglu.evidence import verify_core


@dataclass(frozen=True)
class VerifyProblem:
    code: str
    object: str
    message: str
    severity: str = "error"  # "error" | "warning"


@dataclass(frozen=True)
class CheckpointFact:
    ordinal: int
    tree_size: int
    digest: str
    final: bool
    time_ns: int
    signature: str  # "valid" | "invalid" | "untrusted" | "malformed"


@dataclass(frozen=True)
class VerificationSummary:
    ok: bool
    source: str
    signature_engine: str = ""
    problems: tuple[VerifyProblem, ...] = ()
    checkpoints: tuple[CheckpointFact, ...] = ()
    entries: int = 0
    signed_entries: int = 0
    segments: int = 0
    bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final_digest(self) -> str | None:
        valid = [c for c in self.checkpoints if c.signature == "valid"]
        return valid[-1].digest if valid else None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": self.source,
            "signature_engine": self.signature_engine,
            "entries": self.entries,
            "signed_entries": self.signed_entries,
            "segments": self.segments,
            "bytes": self.bytes,
            "final_digest": self.final_digest,
            "checkpoints": [c.__dict__ for c in self.checkpoints],
            "problems": [p.__dict__ for p in self.problems],
        }


def from_result(result: verify_core.Result, session: str) -> VerificationSummary:
    problems = tuple(
        VerifyProblem(
            p.code, p.object, f"{p.message_zh} ({p.message})" if p.message_zh else p.message, p.severity
        )
        for p in result.problems
        if p.session in (None, session)
    )
    summary = next((s for s in result.sessions if s.session == session), None)
    checkpoints: tuple[CheckpointFact, ...] = ()
    if summary is not None:
        checkpoints = tuple(
            CheckpointFact(c.ordinal, c.tree_size, c.digest, c.final, c.time_ns, c.signature)
            for c in summary.checkpoints
        )
    if summary is None and not any(p.code == "session_empty" for p in problems):
        problems = (
            *problems,
            VerifyProblem(
                "session_empty", f"sessions/{session}/", f"会话没有清单 (session {session} has no manifest)"
            ),
        )
    errors = [p for p in problems if p.severity == verify_core.ERROR]
    return VerificationSummary(
        ok=not errors,
        source=result.source,
        signature_engine=result.signature_engine,
        problems=problems,
        checkpoints=checkpoints,
        entries=summary.entries if summary else 0,
        signed_entries=summary.signed_entries if summary else 0,
        segments=summary.segments if summary else 0,
        bytes=summary.bytes if summary else 0,
    )


def verify(
    source: verify_core.Source, session: str, trusted_keys: tuple[bytes, ...] = ()
) -> VerificationSummary:
    result = verify_core.verify_source(source, sessions=[session], trusted_keys=trusted_keys, package=False)
    return from_result(result, session)
