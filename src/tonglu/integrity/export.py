"""The court export package (出庭证据包): one zip a court can check offline.

Layout (evidence objects keep the bucket's key layout, so `verify.py` reads it like the bucket):

    sessions/<sid>/manifest/NNNNNNNN.json       manifest entries (canonical bytes, hash-chained)
    sessions/<sid>/checkpoints/NNNNNNNN.json    signed checkpoints
    sessions/<sid>/segments/<source>/<track>/…  master segments, as recorded (stored, not compressed)
    sessions/<sid>/transcripts/NNNN.json        transcript versions (when present)
    sessions/<sid>/records/NNNN-….docx|txt      imported 笔录 (signed written records), as imported
    site/keys/<key_id>.pem                      the site's Ed25519 public key
    site/hosts/<key_id>.json                    recorder host key certificates (multi-host sites)
    report/report.html, report/report.json      the integrity review report
    workcopy/<name>.mp4, workcopy/<name>.json   the working copy and the list of masters it came from
    audit/audit.csv                             the audit trail of this session
    README.txt                                  what is in the package, Chinese and English
    verify.py                                   the offline verifier (evidence/verify_core.py)
    SHA256SUMS, SHA256SUMS.sig                  every file's SHA-256, signed with the site key

A session still recording is refused: its evidence is not complete yet.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tonglu.evidence import canonical, keys, verify_core
from tonglu.integrity import html, report
from tonglu.integrity.errors import SessionStillRecording
from tonglu.integrity.service import Loaded, Review
from tonglu.integrity.timefmt import local_text

CHUNK = 1 << 20
AUDIT_COLUMNS = (
    "seq",
    "time_utc",
    "time_ns",
    "user",
    "role",
    "address",
    "action",
    "object",
    "outcome",
    "detail",
    "prev",
    "hash",
)
# Already-compressed media is stored; text is deflated.
STORED_SUFFIXES = (".webm", ".mkv", ".mka", ".ts", ".ogg", ".mp4", ".m4a", ".opus")


@dataclass(frozen=True)
class ExportResult:
    session: str
    path: Path
    files: int
    bytes: int
    segments: int
    verified: bool
    gaps: int
    unexplained: int
    workcopy: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "path": str(self.path),
            "files": self.files,
            "bytes": self.bytes,
            "segments": self.segments,
            "verified": self.verified,
            "gaps": self.gaps,
            "unexplained": self.unexplained,
            "workcopy": self.workcopy,
        }


class _Writer:
    """A zip writer that hashes every file as it is written (SHA256SUMS needs no second pass)."""

    def __init__(self, path: Path) -> None:
        self.zf = zipfile.ZipFile(path, "w", allowZip64=True)
        self.sums: dict[str, str] = {}
        self.total = 0

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=time.gmtime()[:6])
        stored = name.endswith(STORED_SUFFIXES)
        info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        return info

    def add_bytes(self, name: str, data: bytes) -> None:
        self.zf.writestr(self._info(name), data)
        self.sums[name] = hashlib.sha256(data).hexdigest()
        self.total += len(data)

    def add_stream(self, name: str, src: IO[bytes], expect_sha256: str | None = None) -> str:
        h = hashlib.sha256()
        with self.zf.open(self._info(name), "w", force_zip64=True) as dst:
            while block := src.read(CHUNK):
                h.update(block)
                dst.write(block)
                self.total += len(block)
        digest = h.hexdigest()
        self.sums[name] = digest
        return digest

    def add_file(self, name: str, path: Path) -> None:
        with open(path, "rb") as fh:
            self.add_stream(name, fh)

    def close(self) -> None:
        self.zf.close()


def audit_rows(audit: Any, session: str) -> Iterator[dict[str, Any]]:
    """Rows of the audit trail concerning `session`: an AuditLog (`query(obj=...)`), a callable
    taking the session id, or an iterable of row dicts."""
    if audit is None:
        return iter(())
    if hasattr(audit, "query"):
        return iter(audit.query(obj=session))
    if callable(audit):
        return iter(audit(session))
    return iter(audit)


def audit_csv(rows: Iterable[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(AUDIT_COLUMNS)
    for row in rows:
        cells = []
        for col in AUDIT_COLUMNS:
            value = row.get(col, "")
            if isinstance(value, dict | list):
                value = json.dumps(value, ensure_ascii=False, sort_keys=True)
            text = "" if value is None else str(value)
            if text[:1] in ("=", "+", "-", "@") and col not in ("time_ns", "seq"):
                text = "'" + text  # no formula injection when opened in a spreadsheet
            cells.append(text)
        writer.writerow(cells)
    return ("\ufeff" + out.getvalue()).encode("utf-8")  # BOM: Excel opens it as UTF-8


def readme(
    loaded: Loaded, doc: dict[str, Any], key_id: str, workcopy_name: str | None, fingerprint: str = "—"
) -> str:
    f = doc["facts"]
    final = doc["verification"].get("final_digest") or "—"
    wc = f"workcopy/{workcopy_name}" if workcopy_name else "（未包含 not included）"
    return f"""同录 Tonglu 出庭证据包 / Court export package
==========================================

案件编号 Case number : {f.get("case_number") or "—"}
会话 Session         : {loaded.session}
讯问室 Room          : {f.get("room") or "—"}
录制时间 Recorded     : {local_text(loaded.view.start_ns or 0)} 至 {local_text(loaded.view.stop_ns or 0)}
                       （北京时间 Beijing time, UTC+8）
生成时间 Generated    : {doc["generated"]} (UTC)
最新签名摘要 Digest   : {final}
站点公钥 Site key     : {key_id}
公钥指纹 Fingerprint  : {fingerprint}
间断 Gaps            : {doc["summary"]["gaps"]}（未说明 unexplained: {doc["summary"]["unexplained"]}）

一、内容 Contents
  sessions/{loaded.session}/segments/   原始录像片段（未经转码，按录制原样保存） master segments, as recorded
  sessions/{loaded.session}/manifest/   清单条目（哈希链） manifest entries (hash chain)
  sessions/{loaded.session}/checkpoints/ 签名检查点（Ed25519） signed checkpoints
  site/keys/{key_id}.pem   站点公钥 site public key
  report/report.html       完整性审查报告（中文） integrity review report
  report/report.json       同一报告的机读版本 the same report, machine-readable
  {wc}   工作副本（画中画、烧录北京时间；由原始片段转码，仅供观看） working copy for viewing
  audit/audit.csv          访问审计记录 audit trail
  verify.py                离线校验程序 offline verifier
  SHA256SUMS(.sig)         全部文件的 SHA-256 及站点签名 every file's SHA-256, signed

二、如何校验 How to verify (Python 3.9+，无需联网、无需安装其他软件 / offline, standard library only)
  必须用证据包之外的信任锚校验 Verify against an anchor from OUTSIDE this package:
  python3 verify.py 本文件.zip --digest <纸面笔录上签字的最终摘要 the digest on the paper record>
  python3 verify.py 本文件.zip --key <站点公钥.pem site public key obtained from the site itself>
  （在终端中运行且未给出 --key/--digest 时，程序会询问纸面摘要 / at a terminal it asks for the digest）

  摘要必须抄自纸面笔录（参与人签字的那一份），公钥必须从站点本身获得，且其指纹须与站点公布的指纹一致；
  不要照抄本文件中的摘要和指纹：伪造者可以连同本文件一起改写。
  Take the digest from the signed paper record and the key from the site itself, and check that the
  key's fingerprint equals the one the site publishes. Do not copy them from this README: whoever
  forges a package can rewrite this file too. This package claims (must AGREE with both 须与二者一致):
    摘要 digest       {final}
    指纹 fingerprint  {fingerprint}

  结果 Verdicts (exit status):
  “完整 INTACT”(0)：与信任锚一致；每个片段的 SHA-256 与清单一致，清单哈希链完整，检查点签名有效且覆盖全部条目，
      包内每个文件与 SHA256SUMS 一致。任何字节的改动、片段的增删或清单的修改都会被指出具体对象。
      anchored; every segment matches the manifest, the chain and signed checkpoints hold, and every
      file matches SHA256SUMS; any altered byte, added/removed segment or edited entry is named.
  “已篡改或不完整 TAMPERED OR INCOMPLETE”(1)：列出每个问题对象 / every problem is named.
  “一致但未锚定 CONSISTENT, NOT ANCHORED”(3)：未给出 --digest/--key；用新密钥重新签名的伪造包也会如此，
      不能作为完整性的证明 / no anchor given: a package re-signed with a new key looks the same, so this
      proves nothing about authenticity.

三、说明 Notes
  工作副本由原始片段重新编码，仅供播放；证据以原始片段为准。
  间断在工作副本中显示为“录像中断 N 秒”卡片，未被剪除。
  The working copy is re-encoded for playback only; the master segments are the evidence. Gaps are
  shown in it as cards of their real length, never cut out.
"""


def _session_objects(loaded: Loaded) -> list[tuple[str, str]]:
    """(key, sha256) of every object the manifest names (segments, transcripts, 笔录 records)."""
    out = []
    for e in loaded.entries:
        key, digest = e.body.get("key"), e.body.get("sha256")
        if e.kind in ("segment", "transcript", "record_document") and isinstance(key, str) and isinstance(digest, str):
            out.append((key, digest))
    return out


def export_session(
    review: Review,
    session: str,
    output: Path,
    *,
    with_workcopy: bool = True,
    workcopy_height: int = 720,
    now_ns: int | None = None,
) -> ExportResult:
    loaded = review.load(session)
    if loaded.view.recording:
        raise SessionStillRecording(
            f"会话 {session} 仍在录制，不能导出证据包：请先结束录制 (session is still recording: "
            "no session_stop entry yet, so the evidence is incomplete; stop it first)"
        )
    from tonglu.integrity.bilu_store import RecordStore

    analysis = review.analyse_loaded(loaded, now_ns=now_ns)
    records = RecordStore.from_review(review).report_section(session, loaded.entries)
    doc = report.build(analysis, record_comparison=records)
    page = html.render(doc, analysis)
    wc = None
    if with_workcopy:
        from tonglu.integrity import workcopy

        wc = workcopy.build_for_session(review, session, height=workcopy_height)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".part")
    writer = _Writer(tmp)
    segments = 0
    try:
        for e in loaded.entries:
            writer.add_bytes(keys.manifest_key(session, e.seq), e.to_bytes())
        for i, cp in enumerate(loaded.checkpoints):
            writer.add_bytes(keys.checkpoint_key(session, i), cp.to_bytes())
        writer.add_bytes(keys.public_key_key(review.site_key.key_id), review.site_key.public_pem)
        for name, cert in review.host_certs(loaded).items():  # recorder host keys, certified by the site key
            writer.add_bytes(name, cert)
        for key, _digest in _session_objects(loaded):
            # Exported as found: a missing or altered object is named by the report and the verifier.
            try:
                with review.files.open(key) as src:
                    writer.add_stream(key, src)
            except (OSError, KeyError):
                continue
            segments += 1
        writer.add_bytes("report/report.json", json.dumps(doc, ensure_ascii=False, indent=1).encode())
        writer.add_bytes("report/report.html", page.encode())
        if wc is not None:
            writer.add_file(f"workcopy/{wc.mp4.name}", wc.mp4)
            writer.add_file(f"workcopy/{wc.sidecar.name}", wc.sidecar)
        writer.add_bytes("audit/audit.csv", audit_csv(audit_rows(review.audit, session)))
        fingerprint = verify_core.key_fingerprint(
            verify_core.raw_public_key_from_pem(review.site_key.public_pem)
        )
        writer.add_bytes(
            "README.txt",
            readme(loaded, doc, review.site_key.key_id, wc.mp4.name if wc else None, fingerprint).encode(),
        )
        writer.add_bytes("verify.py", Path(verify_core.__file__).read_bytes())
        sums = "".join(f"{digest}  {name}\n" for name, digest in sorted(writer.sums.items())).encode()
        writer.add_bytes(verify_core.SUMS_NAME, sums)
        sig = canonical.encode(
            {
                "key_id": review.site_key.key_id,
                "signature": base64.b64encode(review.site_key.sign(sums)).decode(),
            }
        )
        writer.zf.writestr(writer._info(verify_core.SUMS_SIG_NAME), sig)
        files = len(writer.sums) + 1
        total = writer.total + len(sig)
        writer.close()
        os.replace(tmp, output)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return ExportResult(
        session,
        output,
        files,
        total,
        segments,
        analysis.verified,
        doc["summary"]["gaps"],
        doc["summary"]["unexplained"],
        wc is not None,
    )
