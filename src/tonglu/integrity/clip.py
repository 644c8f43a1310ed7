"""Clip export (片段导出): minutes of one session that a court can check on their own, offline.

    result = export_clip(review, sid, from_ns, to_ns, Path("clip.zip"), sources=["main"], by="reviewer1")

Layout of the zip (what `verify_core` checks in clip mode; see there):

    clip.json                                    the claim, signed by the site key: session, range,
                                                 tracks, checkpoint, who cut it and when
    sessions/<sid>/manifest/NNNNNNNN.json        the entries the clip needs, canonical bytes as stored
    sessions/<sid>/proofs/NNNNNNNN.json          each entry's RFC 9162 inclusion proof (audit path)
    sessions/<sid>/checkpoints/NNNNNNNN.json     the signed checkpoint the proofs lead to
    sessions/<sid>/segments/<source>/<track>/…   the whole master segments covering the range
    site/keys/<key_id>.pem                       the site public key
    clip/<source>.mp4                            playable MP4 per source (see clipmedia)
    README.txt, verify.py, SHA256SUMS(.sig)

Cost: the manifest's leaf hashes are kept by the ledger as it reads entries, so building the proofs
costs one SHA-256 per tree node (no entry re-encoded, no segment outside the range read); only the
segments inside the range are read, once, by FETCH_THREADS threads, source by source; each source's
playable MP4 is made (BUILD_THREADS at once) as soon as its segments are in, while the zip is
written (each segment hashed as it goes in).
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tonglu.evidence import canonical, keys, merkle, verify_core
from tonglu.evidence.checkpoint import Checkpoint
from tonglu.evidence.manifest import ManifestEntry
from tonglu.integrity import clipmedia
from tonglu.integrity.clip_plan import ClipPlan, plan_clip
from tonglu.integrity.errors import IntegrityError, MediaMissing, ToolError, UnknownSession
from tonglu.integrity.export import _Writer
from tonglu.integrity.service import Review
from tonglu.integrity.timefmt import iso_utc, local_text

CLIP_DIR = "clip"


@dataclass
class ClipExport:
    session: str
    path: Path
    from_ns: int
    to_ns: int
    tracks: list[str]
    segments: int
    entries: int
    gaps: int
    bytes: int
    checkpoint_digest: str
    final: bool
    intact: bool  # every segment read matched its manifest entry
    altered: list[str] = field(default_factory=list)
    media: list[dict[str, Any]] = field(default_factory=list)
    media_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "path": str(self.path),
            "from": iso_utc(self.from_ns),
            "to": iso_utc(self.to_ns),
            "tracks": self.tracks,
            "segments": self.segments,
            "entries": self.entries,
            "gaps": self.gaps,
            "bytes": self.bytes,
            "checkpoint_digest": self.checkpoint_digest,
            "final": self.final,
            "intact": self.intact,
            "altered": self.altered,
            "media": self.media,
            "media_errors": self.media_errors,
            "seconds": round(self.seconds, 3),
        }


def proof_bytes(seq: int, tree_size: int, path: list[bytes]) -> bytes:
    return canonical.encode(
        {"v": verify_core.PROOF_VERSION, "seq": seq, "tree_size": tree_size, "audit_path": [h.hex() for h in path]}
    )


def _readme(
    f: dict[str, Any],
    plan: ClipPlan,
    key_id: str,
    media: list[clipmedia.MediaResult],
    by: str,
    media_errors: list[str] | None = None,
) -> str:
    cp = plan.checkpoint
    lines_media = []
    for m in media:
        if m.video.startswith("h264 (re-encoded"):
            how = (
                f"视频由 {m.video.split('from ')[-1].rstrip(')')} 重新编码为 H.264（MP4 不能直接容纳原编码），"
                "音频未经转码 / video re-encoded to H.264 (MP4 cannot carry the original codec as is); "
                "audio stream-copied"
            )
        elif m.video == "copy":
            how = "音视频均未经转码（流复制）/ audio and video stream-copied, not re-encoded"
        else:
            how = "仅音频，未经转码 / audio only, stream-copied"
        lines_media.append(
            f"  clip/{m.name}  起点 starts {local_text(m.origin_ns)}（北京时间）, {m.duration_ns / 1e9:.1f} s — {how}"
        )
    for err in media_errors or []:
        lines_media.append(f"  未能生成 not made — {err}")
    gap_lines = [
        f"  {g.source}/{g.track} {local_text(g.start_ns)} 至 {local_text(g.end_ns)}  ({g.reason})" for _, g in plan.gaps
    ] or ["  无 none"]
    return f"""同录 Tonglu 录像片段（可独立校验）/ Clip with its own proof
==========================================================

案件编号 Case number : {f.get("case_number") or "—"}
会话 Session         : {plan.session}
讯问室 Room          : {f.get("room") or "—"}
声明的时间段 Claimed range (北京时间 Beijing time, UTC+8):
                       {local_text(plan.from_ns)} 至 {local_text(plan.to_ns)}
                       UTC: {iso_utc(plan.from_ns)} – {iso_utc(plan.to_ns)}
信号源 Sources       : {", ".join(plan.sources)}（轨道 tracks: {", ".join(plan.tracks)}）
签名检查点 Checkpoint : {keys.checkpoint_key(plan.session, plan.checkpoint_ordinal)}
                       {cp.tree_size} 条目 entries, 摘要 digest {cp.digest}{"（最终 final）" if cp.final else ""}
制作人 Cut by         : {by}，{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

一、内容 Contents
  clip.json                               片段说明（时间段、轨道、检查点），站点签名 the claim, signed
  sessions/{plan.session}/segments/   覆盖该时间段的完整原始片段（未经转码） whole master segments
  sessions/{plan.session}/manifest/   所需的清单条目（原样） the manifest entries, exactly as stored
  sessions/{plan.session}/proofs/     每个条目的默克尔包含证明 (RFC 9162) inclusion proof of each entry
  sessions/{plan.session}/checkpoints/ 签名检查点 the signed checkpoint
  site/keys/{key_id}.pem   站点公钥 site public key
  verify.py                离线校验程序 offline verifier
  SHA256SUMS(.sig)         全部文件的 SHA-256 及站点签名 every file's SHA-256, signed
可播放副本 Playable copies（仅供观看，证据以原始片段为准 for viewing; the masters are the evidence）:
{chr(10).join(lines_media) or "  无 none"}

二、时间段内已记录的间断 Gaps recorded inside the range
{chr(10).join(gap_lines)}

三、如何校验 How to verify (Python 3.9+，无需联网 / offline, standard library only)
  python3 verify.py 本文件.zip
  python3 verify.py CLIP.zip --key 站点公钥.pem --digest {cp.digest}

  校验内容：每个片段的 SHA-256 与其清单条目一致；每个条目的包含证明通向检查点签名的默克尔根及树大小；
  检查点与片段说明的签名有效；声明的时间段被所含片段完整覆盖（仅在已包含并报告的间断处例外）；
  第一个与最后一个片段之间的全部条目齐全（期间记录的间断不能被隐去）。不需要会话的其余部分。
  Checked: every segment against its entry; every entry's inclusion proof against the checkpoint's
  signed root and tree size; the checkpoint's and the clip's signatures; the claimed range covered by
  the included segments (no hole except where an included gap entry accounts for it, and is reported);
  every entry between the first and the last segment present (no gap recorded meanwhile can be hidden).
  The rest of the session is not needed. Any change to the clip fails and names what changed.

四、说明 Notes
  片段包含覆盖该时间段的完整原始片段，因此可能比声明的时间段略长（前后各不超过一个片段）。
  流复制的视频从该时间段第一个片段的关键帧开始；重新编码的视频恰好从声明的起点开始。间断不会被剪除。
  The masters are whole segments, so they may reach up to one segment beyond each end of the range.
  Stream-copied video starts at the keyframe opening the first segment; re-encoded video starts exactly
  at the claimed start. Gaps are kept at their real length, never cut out.
"""


def load_session(review: Review, session: str) -> tuple[list[ManifestEntry], list[Checkpoint]]:
    """Entries and checkpoints only (no session view: a clip needs a few of ~10^5 entries parsed)."""
    try:
        keys.safe_id(session, "session id")
    except ValueError as exc:
        raise UnknownSession(f"会话不存在 unknown session {session!r}: {exc}") from exc
    if not review.ledger.has(session):
        raise UnknownSession(f"会话不存在 unknown session {session!r}: no manifest in {review.ledger.root}")
    return review.ledger.entries(session), review.ledger.checkpoints(session)


def session_start_ns(review: Review, session: str) -> int:
    """Time of the session_start entry: position 0 for offsets like 02:10:00."""
    entries, _ = load_session(review, session)
    return next((e.time_ns for e in entries if e.kind == "session_start"), entries[0].time_ns if entries else 0)


FETCH_THREADS = 8  # object store GETs in flight
BUILD_THREADS = 2  # sources whose MP4 is made at once (x264 single-threaded each)


class _Fetcher:
    """The range's master segments copied to `work` by a pool of threads in wall-clock order (the
    order the MP4s consume them: each is made while the later segments are still arriving); each
    segment read once."""

    def __init__(self, review: Review, plan: ClipPlan, work: Path) -> None:
        self.review = review
        order = sorted(range(len(plan.segments)), key=lambda i: (plan.segments[i].rec.wall_first_ns, i))
        self.pool = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="clip-fetch")
        self.futures: dict[str, Future[Path]] = {}
        self.paths: dict[str, Path] = {}
        review.files.prime([plan.segments[i].rec.key for i in order])
        for n, i in enumerate(order):
            rec = plan.segments[i].rec
            path = self.paths[rec.key] = work / f"{n:06d}-{Path(rec.key).name}"
            if n == 0:  # the first read fills the reader's cache (the spool's listing) alone
                first: Future[Path] = Future()
                try:
                    first.set_result(self._copy(rec.key, path))
                except BaseException as exc:
                    first.set_exception(exc)
                self.futures[rec.key] = first
            else:
                self.futures[rec.key] = self.pool.submit(self._copy, rec.key, path)

    def _copy(self, key: str, path: Path) -> Path:
        try:
            with self.review.files.open_exact(key) as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except OSError as exc:
            raise MediaMissing(f"原始片段无法读取 master segment {key} cannot be read: {exc}") from exc
        return path

    def path(self, key: str) -> Path:
        return self.futures[key].result()

    def future(self, key: str) -> Future[Path]:
        return self.futures[key]

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _start_builds(
    pool: ThreadPoolExecutor, fetched: _Fetcher, plan: ClipPlan, work: Path, from_ns: int, to_ns: int
) -> list[tuple[str, Future[clipmedia.MediaResult]]]:
    """One MP4 per source, made while its segments are fetched (each waited for as it is reached)."""
    jobs: list[tuple[str, Callable[[], clipmedia.MediaResult]]] = []
    several = len({s.rec.source for s in plan.segments}) > 1  # MP4s made at once: x264 single-threaded
    for source in plan.sources:
        tracks = sorted({s.rec.track for s in plan.segments if s.rec.source == source})
        video_tracks = [
            t for t in tracks
            if any(s.rec.media == "video" for s in plan.segments if s.rec.source == source and s.rec.track == t)
        ]
        audio_tracks = [t for t in tracks if t not in video_tracks]
        picked = {t: [s for s in plan.segments if s.rec.source == source and s.rec.track == t] for t in tracks}
        if not any(picked.values()):
            continue

        def build(source: str = source, video_tracks: list[str] = video_tracks,
                  audio_tracks: list[str] = audio_tracks, picked: dict[str, list[Any]] = picked
                  ) -> clipmedia.MediaResult:
            def files(track: str) -> list[clipmedia.SegFile]:
                return [
                    clipmedia.SegFile(fetched.paths[s.rec.key], s.rec.wall_first_ns, s.rec.wall_last_ns, s.rec.codec,
                                      fetched.future(s.rec.key))
                    for s in picked[track]
                ]

            video = files(video_tracks[0]) if video_tracks else []
            audios = [files(t) for t in audio_tracks]
            return clipmedia.build_mp4(work / "mp4" / f"{source}.mp4", source, video, audios, from_ns, to_ns,
                                       threads=1 if several else 0)

        jobs.append((source, build))
    return [(source, pool.submit(job)) for source, job in jobs]


def export_clip(
    review: Review,
    session: str,
    from_ns: int,
    to_ns: int,
    output: Path,
    *,
    sources: list[str] | None = None,
    by: str = "cli",
    with_media: bool = True,
    now_ns: int | None = None,
) -> ClipExport:
    t_start = time.perf_counter()
    entries, checkpoints = load_session(review, session)
    plan = plan_clip(session, entries, checkpoints, from_ns, to_ns, sources)
    facts = next((e.body for e in entries if e.kind == "session_start"), {})
    cp = plan.checkpoint
    leaves = review.ledger.leaf_hashes(session)[: cp.tree_size]
    tree = merkle.MerkleTree(leaves)
    if len(leaves) != cp.tree_size or tree.root.hex() != cp.root:
        raise IntegrityError(
            f"本地清单与签名检查点不符 the local ledger of {session} does not match its checkpoint "
            f"#{plan.checkpoint_ordinal} (root/tree size): run `tonglu verify --session {session}`"
        )
    key = review.site_key
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".part")
    work = Path(
        tempfile.mkdtemp(
            prefix="tonglu-clip-", dir=review.settings.data_dir if review.settings.data_dir.is_dir() else None
        )
    )
    writer = _Writer(tmp)
    altered: list[str] = []
    media: list[clipmedia.MediaResult] = []
    media_errors: list[str] = []
    try:
        for seq in plan.entry_seqs:
            writer.add_bytes(keys.manifest_key(session, seq), entries[seq].to_bytes())
            writer.add_bytes(
                f"{keys.session_prefix(session)}proofs/{seq:08d}.json",
                proof_bytes(seq, cp.tree_size, tree.inclusion_proof(seq)),
            )
        cp_name = keys.checkpoint_key(session, plan.checkpoint_ordinal)
        writer.add_bytes(cp_name, cp.to_bytes())
        writer.add_bytes(keys.public_key_key(key.key_id), key.public_pem)
        fetched = _Fetcher(review, plan, work)
        builder = ThreadPoolExecutor(BUILD_THREADS, thread_name_prefix="clip-mp4")
        try:
            builds = _start_builds(builder, fetched, plan, work, from_ns, to_ns) if with_media else []
            for s in plan.segments:  # into the zip in plan order, each as soon as it is here
                with open(fetched.path(s.rec.key), "rb") as fh:
                    digest = writer.add_stream(s.rec.key, fh)
                if digest != s.rec.sha256:
                    altered.append(s.rec.key)
            for source, build in builds:
                try:
                    result = build.result()
                except ToolError as exc:  # the masters are the evidence: the clip is made without it
                    media_errors.append(f"{source}: {exc}")
                    continue
                writer.add_file(f"{CLIP_DIR}/{result.name}", result.path)
                media.append(result)
        finally:
            fetched.close()  # on an error: pending reads cancelled, so builds waiting on them end
            builder.shutdown(wait=True, cancel_futures=True)
        body = {
            "v": verify_core.CLIP_VERSION,
            "kind": "clip",
            "session": session,
            "from_ns": from_ns,
            "to_ns": to_ns,
            "tracks": plan.tracks,
            "checkpoint": cp_name,
            "tree_size": cp.tree_size,
            "root": cp.root,
            "key_id": key.key_id,
            "created_ns": now_ns if now_ns is not None else time.time_ns(),
            "created_by": by,
            "media": [m.to_json() for m in media],
        }
        signed = canonical.encode(
            {"body": body, "signature": base64.b64encode(key.sign(canonical.encode(body))).decode()}
        )
        writer.add_bytes(verify_core.CLIP_NAME, signed)
        writer.add_bytes("README.txt", _readme(facts, plan, key.key_id, media, by, media_errors).encode())
        writer.add_bytes("verify.py", Path(verify_core.__file__).read_bytes())
        sums = "".join(f"{digest}  {name}\n" for name, digest in sorted(writer.sums.items())).encode()
        writer.add_bytes(verify_core.SUMS_NAME, sums)
        sig = canonical.encode({"key_id": key.key_id, "signature": base64.b64encode(key.sign(sums)).decode()})
        writer.zf.writestr(writer._info(verify_core.SUMS_SIG_NAME), sig)
        total = writer.total + len(sig)
        writer.close()
        os.replace(tmp, output)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ClipExport(
        session=session,
        path=output,
        from_ns=from_ns,
        to_ns=to_ns,
        tracks=plan.tracks,
        segments=len(plan.segments),
        entries=len(plan.entry_seqs),
        gaps=len(plan.gaps),
        bytes=total,
        checkpoint_digest=cp.digest,
        final=cp.final,
        intact=not altered,
        altered=altered,
        media=[m.to_json() for m in media],
        media_errors=media_errors,
        seconds=time.perf_counter() - t_start,
    )
