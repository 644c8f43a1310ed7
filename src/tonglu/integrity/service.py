"""The integrity review as a service: what the CLI and the web routes call.

    review = Review.from_services(services)          # or Review(settings, ledger, site_key, files)
    analysis = review.analyse(sid)                    # findings (+ verification)
    doc = review.report(sid)                          # the report JSON
    review.explain(sid, finding_id, reason_code=..., text=..., approver=..., by=...)

Reading the session (ledger entries, checkpoints) and running the verifier are the only I/O here;
the analysis itself is `integrity.analysis.analyse`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tonglu.config import Settings
from tonglu.evidence import keys
from tonglu.evidence.checkpoint import Checkpoint
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.logctx import context_logger
from tonglu.evidence.manifest import ManifestEntry
from tonglu.evidence.signing import SiteKey
from tonglu.integrity import verification
from tonglu.integrity.analysis import Analysis, analyse
from tonglu.integrity.config import AnalysisConfig
from tonglu.integrity.errors import InvalidExplanation, UnknownFinding, UnknownSession
from tonglu.integrity.evidence import EvidenceFiles, LedgerSource, SpoolStoreEvidence
from tonglu.integrity.findings import REASON_CODES
from tonglu.integrity.session import SessionView, build_view

AuditRows = Callable[[str], Iterable[dict[str, Any]]] | Iterable[dict[str, Any]] | None


@dataclass
class Loaded:
    session: str
    entries: list[ManifestEntry]
    checkpoints: list[Checkpoint]
    view: SessionView


@dataclass
class Review:
    settings: Settings
    ledger: Ledger
    site_key: SiteKey
    files: EvidenceFiles
    audit: Any = None  # web.audit.AuditLog (rows for the export's audit CSV), optional
    on_entry: Callable[[ManifestEntry], None] | None = None  # e.g. services.index.apply
    config: AnalysisConfig = field(default_factory=AnalysisConfig)

    @classmethod
    def from_services(cls, services: Any) -> Review:
        index = getattr(services, "index", None)
        return cls(
            settings=services.settings,
            ledger=services.ledger,
            site_key=services.site_key,
            files=SpoolStoreEvidence(services.spool, getattr(services, "store", None)),
            audit=getattr(services, "audit", None),
            on_entry=getattr(index, "apply", None) if index is not None else None,
            config=AnalysisConfig.from_settings(services.settings),
        )

    # -- reading ---------------------------------------------------------------------------------
    def load(self, session: str) -> Loaded:
        try:
            keys.safe_id(session, "session id")
        except ValueError as exc:
            raise UnknownSession(f"会话不存在 unknown session {session!r}: {exc}") from exc
        if not self.ledger.has(session):
            raise UnknownSession(f"会话不存在 unknown session {session!r}: no manifest in {self.ledger.root}")
        entries = self.ledger.entries(session)
        checkpoints = self.ledger.checkpoints(session)
        return Loaded(session, entries, checkpoints, build_view(session, entries))

    def public_pems(self) -> dict[str, bytes]:
        return {self.site_key.key_id: self.site_key.public_pem}

    def host_certs(self, loaded: Loaded) -> dict[str, bytes]:
        """{site/hosts/<key id>.json: certificate} of the recorder host keys that signed the
        session's checkpoints (read from the evidence bucket; evidence.hostcert)."""
        from tonglu.evidence.verify_core import host_cert_name

        out: dict[str, bytes] = {}
        for key_id in {cp.key_id for cp in loaded.checkpoints} - {self.site_key.key_id}:
            name = host_cert_name(key_id)
            try:
                with self.files.open(name) as fh:
                    out[name] = fh.read()
            except (OSError, ValueError):
                continue  # the verifier names the key as uncertified
        return out

    def verify(self, loaded: Loaded) -> verification.VerificationSummary:
        source = LedgerSource(
            loaded.session, loaded.entries, loaded.checkpoints, self.public_pems(), self.files,
            host_certs=self.host_certs(loaded),
        )
        return verification.verify(source, loaded.session, trusted_keys=(self.site_key.public_pem,))

    def analyse(self, session: str, *, now_ns: int | None = None, verify: bool = True) -> Analysis:
        loaded = self.load(session)
        return self.analyse_loaded(loaded, now_ns=now_ns, verify=verify)

    def analyse_loaded(self, loaded: Loaded, *, now_ns: int | None = None, verify: bool = True) -> Analysis:
        if now_ns is None and loaded.view.recording:
            now_ns = time.time_ns()
        summary = self.verify(loaded) if verify else None
        where = {s.rec.key: self.files.where(s.rec.key) for s in loaded.view.segments}
        return analyse(loaded.view, self.config, verification=summary, where=where, now_ns=now_ns)

    # -- explanations ----------------------------------------------------------------------------
    def explain(
        self,
        session: str,
        finding_id: str,
        *,
        reason_code: str,
        text: str,
        approver: str,
        by: str,
        now_ns: int | None = None,
    ) -> ManifestEntry:
        """Append an `explanation` entry for a finding, then a checkpoint so a signature covers it."""
        if reason_code not in REASON_CODES:
            raise InvalidExplanation(
                f"理由代码无效 reason code {reason_code!r} is not one of {', '.join(REASON_CODES)}"
            )
        if not text.strip():
            raise InvalidExplanation("缺少说明 the explanation text is empty")
        if not approver.strip():
            raise InvalidExplanation("缺少批准人 an approver is required")
        if not by.strip():
            raise InvalidExplanation("缺少填写人 the author (by) is required")
        analysis = self.analyse(session, verify=False, now_ns=now_ns)
        if analysis.find(finding_id) is None:
            raise UnknownFinding(
                f"会话 {session} 中没有编号为 {finding_id} 的问题 (no finding {finding_id!r})"
            )
        body = {
            "finding_id": finding_id,
            "reason_code": reason_code,
            "text": text.strip(),
            "approver": approver.strip(),
            "by": by.strip(),
        }
        entry = self.ledger.append(session, "explanation", body, now_ns=now_ns)
        if self.on_entry is not None:
            self.on_entry(entry)
        self.ledger.checkpoint(session, final=not analysis.view.recording, now_ns=now_ns)
        log = context_logger(__name__, session=session)
        log.info(
            "explanation %s for finding %s (%s, approved by %s)", entry.seq, finding_id, reason_code, approver
        )
        return entry
