"""Clip export with its own proof: clips of various ranges verify offline with both verifiers (the
clip's own verify.py under a bare python3, and `tonglu verify`); a flipped segment byte, a removed
segment, an edited proof hash, an edited claimed range each fail naming it; a clip claiming more time
than its segments cover fails even when re-signed; the MP4 decodes and lasts the range (± a segment)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import av
import pytest

from tests.clip.helpers import both, clip_body, errors, rewrite, signed_clip
from tests.integrity.builder import T0, Built
from tonglu.evidence import canonical, keys
from tonglu.integrity.clip import export_clip
from tonglu.integrity.clip_plan import parse_time
from tonglu.integrity.errors import InvalidClipRange

S = 1_000_000_000
MS = 1_000_000


@pytest.mark.parametrize(
    ("lo", "hi", "sources", "segments", "gaps"),
    [
        (0, 6 * S, None, 11, 1),  # the whole session, all tracks, one recorded gap inside
        (2500 * MS, 3500 * MS, ["main"], 1, 1),  # main/audio has only the gap there
        (1 * S, 5 * S, ["panorama"], 6, 0),
        (4200 * MS, 5900 * MS, None, 4, 0),
    ],
    ids=["whole", "inside-gap", "panorama-across-segments", "tail"],
)
def test_clips_verify_offline_with_both_verifiers(
    session: tuple[Built, Path], tmp_path: Path, lo: int, hi: int, sources: list[str] | None, segments: int, gaps: int
) -> None:
    b, pem = session
    out = tmp_path / "clip.zip"
    result = export_clip(b.review, b.sid, T0 + lo, T0 + hi, out, sources=sources, by="审查员 reviewer1")
    assert result.intact and result.segments == segments and result.gaps == gaps
    ra, rb = both(out, pem)
    for r in (ra, rb):
        assert r["_rc"] == 0 and r["ok"] is True, r.get("problems")
        assert r["package_sums"] == "signed"
        assert r["clip"]["covered"] is True and r["clip"]["from_ns"] == T0 + lo and r["clip"]["to_ns"] == T0 + hi
        assert len(r["clip"]["gaps"]) == gaps
        assert r["clip"]["proofs_valid"] == r["clip"]["entries"] == result.entries
        assert r["sessions"][0]["segments"] == segments
        assert r["sessions"][0]["final_digest"] == b.ledger.checkpoints(b.sid)[-1].digest
    assert {p["code"] for p in ra["problems"]} <= {"clip_gap_in_range"}
    assert rb["signature_engine"] == "builtin-ed25519"  # the bare python3 has no `cryptography`
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        readme = zf.read("README.txt").decode()
    assert {"clip.json", "verify.py", "README.txt", "SHA256SUMS", "SHA256SUMS.sig"} <= names
    assert [n for n in names if "/checkpoints/" in n] == [keys.checkpoint_key(b.sid, 1)]  # the final one
    assert len([n for n in names if "/segments/" in n]) == segments
    assert "声明的时间段" in readme and "Claimed range" in readme and "re-encoded" in readme
    assert keys.manifest_key(b.sid, 0) in names  # session_start: case and room


def test_clip_without_the_rest_of_the_session(session: tuple[Built, Path], tmp_path: Path) -> None:
    """Only what the range needs travels: 1 segment per track, not the session's 11."""
    b, pem = session
    out = tmp_path / "clip.zip"
    export_clip(b.review, b.sid, T0 + 500 * MS, T0 + 1500 * MS, out, with_media=False)
    with zipfile.ZipFile(out) as zf:
        segs = [n for n in zf.namelist() if "/segments/" in n]
    assert sorted(segs) == sorted(b.seg_key(s, t, 0) for s in ("main", "panorama") for t in ("audio", "video"))
    ra, rb = both(out, pem)
    assert ra["ok"] and rb["ok"], (ra["problems"], rb["problems"])


@pytest.fixture(scope="module")
def clip(session: tuple[Built, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    b, _ = session
    out = tmp_path_factory.mktemp("clip-tamper") / "clip.zip"
    export_clip(b.review, b.sid, T0 + 1 * S, T0 + 5 * S, out, with_media=False)
    return out


def _first_proof(path: Path, b: Built) -> tuple[str, bytes]:
    name = f"sessions/{b.sid}/proofs/{2:08d}.json"
    with zipfile.ZipFile(path) as zf:
        doc = canonical.decode(zf.read(name))
    assert doc["audit_path"]
    doc["audit_path"][0] = "0" * 64
    return name, canonical.encode(doc)


@pytest.mark.parametrize("resum", [False, True], ids=["as-is", "sums-rewritten-and-resigned"])
@pytest.mark.parametrize(
    "attack", ["flip_segment_byte", "remove_segment", "edit_proof_hash", "edit_claimed_range", "edit_entry_to_match"]
)
def test_any_change_fails_naming_it(
    session: tuple[Built, Path], clip: Path, tmp_path: Path, attack: str, resum: bool
) -> None:
    b, pem = session
    seg = b.seg_key("panorama", "video", 1)
    with zipfile.ZipFile(clip) as zf:
        data = zf.read(seg)
    change: dict[str, bytes] = {}
    drop: set[str] = set()
    if attack == "flip_segment_byte":
        change[seg] = data[:1000] + bytes([data[1000] ^ 0x01]) + data[1001:]
        expected = ("segment_altered", seg)
    elif attack == "remove_segment":
        drop.add(seg)
        expected = ("segment_missing", seg)
    elif attack == "edit_proof_hash":
        name, edited = _first_proof(clip, b)
        change[name] = edited
        expected = ("proof_invalid", name)
    elif attack == "edit_entry_to_match":  # alter the segment and write its new hash into its entry
        altered = data[:1000] + bytes([data[1000] ^ 0x01]) + data[1001:]
        change[seg] = altered
        entry = next(e for e in b.ledger.entries(b.sid) if e.body.get("key") == seg)
        name = keys.manifest_key(b.sid, entry.seq)
        doc = canonical.decode(entry.to_bytes())
        doc["body"]["sha256"] = hashlib.sha256(altered).hexdigest()
        change[name] = canonical.encode(doc)
        expected = ("entry_edited", name)
    else:
        body = clip_body(clip)
        body["from_ns"] -= 1 * S  # still inside the recording: only the signature can tell
        with zipfile.ZipFile(clip) as zf:
            doc = canonical.decode(zf.read("clip.json"))
        change["clip.json"] = canonical.encode({**doc, "body": body})
        expected = ("clip_signature_invalid", "clip.json")
    bad = rewrite(clip, tmp_path / "bad.zip", change=change, drop=drop, resum=b.key if resum else None)
    ra, rb = both(bad, pem)
    for r in (ra, rb):
        assert r["_rc"] == 1 and r["ok"] is False
        assert expected in errors(r), r["problems"]
        if not resum:  # the signed SHA256SUMS names the file as well
            assert errors(r) & {("package_file_altered", expected[1]), ("package_file_missing", expected[1])} or (
                expected[1] == "clip.json"
            )


def test_claimed_range_wider_than_segments_fails_even_when_signed(
    session: tuple[Built, Path], clip: Path, tmp_path: Path
) -> None:
    """A clip re-signed with the site key (or cut by a buggy exporter) still cannot claim time that
    its segments do not cover: the coverage is computed from the signed segment entries."""
    b, pem = session
    body = clip_body(clip)
    body["to_ns"] = T0 + 7 * S  # the clip's segments end at T0 + 6 s (and the session too)
    bad = rewrite(clip, tmp_path / "wide.zip", change={"clip.json": signed_clip(body, b.key)}, resum=b.key)
    ra, rb = both(bad, pem)
    for r in (ra, rb):
        assert r["_rc"] == 1 and ("clip_range_not_covered", "clip.json") in errors(r), r["problems"]
        assert r["clip"]["covered"] is False
        assert ("clip_signature_invalid", "clip.json") not in errors(r)
        msgs = [p["message"] for p in r["problems"] if p["code"] == "clip_range_not_covered"]
        assert any("2024-05-01T06:00:06.000Z" in m and "06:00:07.000Z" in m for m in msgs)


def test_a_gap_cannot_be_hidden(session: tuple[Built, Path], tmp_path: Path) -> None:
    """Dropping the gap entry (and its proof) from a clip across it fails: the entries between the
    first and the last segment must all be there, and the hole it explained is then unexplained."""
    b, pem = session
    out = tmp_path / "clip.zip"
    export_clip(b.review, b.sid, T0 + 1 * S, T0 + 5 * S, out, sources=["main"], with_media=False)
    gap_seq = next(e.seq for e in b.ledger.entries(b.sid) if e.kind == "gap")
    gap_entry = keys.manifest_key(b.sid, gap_seq)
    proof = f"sessions/{b.sid}/proofs/{gap_seq:08d}.json"
    bad = rewrite(out, tmp_path / "hidden.zip", drop={gap_entry, proof}, resum=b.key)
    ra, rb = both(bad, pem)
    for r in (ra, rb):
        assert r["_rc"] == 1
        assert ("entry_missing", gap_entry) in errors(r), r["problems"]
        assert ("clip_range_not_covered", "clip.json") in errors(r)


def test_unsigned_or_uncovered_ranges_are_refused(session: tuple[Built, Path], tmp_path: Path) -> None:
    b, _ = session
    with pytest.raises(InvalidClipRange, match="no media"):
        export_clip(b.review, b.sid, T0 + 5 * S, T0 + 8 * S, tmp_path / "x.zip")
    with pytest.raises(InvalidClipRange, match="ends"):
        export_clip(b.review, b.sid, T0 + 5 * S, T0 + 4 * S, tmp_path / "x.zip")
    with pytest.raises(InvalidClipRange, match="nosuch"):
        export_clip(b.review, b.sid, T0, T0 + S, tmp_path / "x.zip", sources=["nosuch"])
    assert not (tmp_path / "x.zip").exists() and not (tmp_path / "x.zip.part").exists()


def test_time_forms() -> None:
    start = T0
    assert parse_time("02:10:00", start) == T0 + (2 * 3600 + 600) * S
    assert parse_time("+0:00:01.5", start) == T0 + 1500 * MS
    with pytest.raises(InvalidClipRange, match="ambiguous"):
        parse_time("02:10", start)  # 2 h 10 min or 2 min 10 s? refused, never guessed
    assert parse_time("2024-05-01T06:00:03Z", start) == T0 + 3 * S
    assert parse_time("2024-05-01T14:00:03+08:00", start) == T0 + 3 * S
    assert parse_time("2024-05-01T14:00:03", start) == T0 + 3 * S  # no offset: Beijing time
    for bad in ("yesterday", "1:75:00", "1:00:60", "25:99"):
        with pytest.raises(InvalidClipRange):
            parse_time(bad, start)


def test_mp4_plays_and_lasts_the_range(session: tuple[Built, Path], tmp_path: Path) -> None:
    b, pem = session
    out = tmp_path / "clip.zip"
    lo, hi = T0 + 1300 * MS, T0 + 4700 * MS
    result = export_clip(b.review, b.sid, lo, hi, out)
    assert {m["name"] for m in result.media} == {"main.mp4", "panorama.mp4"}
    with zipfile.ZipFile(out) as zf:
        for m in result.media:
            mp4 = tmp_path / m["name"]
            mp4.write_bytes(zf.read(f"clip/{m['name']}"))
            with av.open(str(mp4)) as c:
                assert {s.type for s in c.streams} == {"video", "audio"}
                frames = sum(1 for _ in c.decode(video=0))
                duration = c.duration / av.time_base
            with av.open(str(mp4)) as c:
                samples = sum(f.samples for f in c.decode(audio=0))
            assert frames > 0 and samples > 0
            assert abs(duration - (hi - lo) / S) <= 2.0  # within one segment (2 s)
            assert m["video"] == "h264 (re-encoded from vp8)"  # MP4 cannot carry VP8: said in README
        doc = json.loads(json.dumps(clip_body(out)["media"]))
    assert [m["name"] for m in doc] == [m["name"] for m in result.media]
    ra, rb = both(out, pem)
    assert ra["ok"] and rb["ok"]


def test_a_source_that_never_connected_is_claimed_with_its_gap(tmp_path: Path) -> None:
    """An expected camera that never published has no segments, only a `not_connected` gap: a clip of
    all sources claims its track too, covered by that gap and reported, not silently left out."""
    from tests.integrity.builder import SOURCES, Scenario, build
    from tonglu.evidence.manifest import GapRecord

    gap = GapRecord("side", "video", "not_connected", T0, T0 + 6 * S, detail="侧面摄像机未连接")
    b = build(tmp_path, Scenario(sources={**SOURCES, "side": {"kind": "camera"}}, gaps=[gap]))
    pem = tmp_path / "site.pem"
    pem.write_bytes(b.key.public_pem)
    out = tmp_path / "clip.zip"
    result = export_clip(b.review, b.sid, T0 + 1 * S, T0 + 2 * S, out)
    assert "side/video" in result.tracks and result.gaps == 1
    assert {m["name"] for m in result.media} == {"main.mp4", "panorama.mp4"}
    ra, rb = both(out, pem)
    for r in (ra, rb):
        assert r["ok"], r["problems"]
        assert [g["track"] for g in r["clip"]["gaps"]] == ["side/video"]


@pytest.mark.parametrize("member", ["README.txt", "clip/main.mp4", "verify.py", "site/keys/"])
def test_package_files_are_covered_by_the_signed_sums(session: tuple[Built, Path], tmp_path: Path, member: str) -> None:
    from tonglu.evidence import verify_core

    b, pem = session
    out = tmp_path / "clip.zip"
    export_clip(b.review, b.sid, T0 + 1 * S, T0 + 2 * S, out, sources=["main"])
    with zipfile.ZipFile(out) as zf:
        name = next(n for n in zf.namelist() if n.startswith(member))
        data = zf.read(name)
    bad = rewrite(out, tmp_path / "bad.zip", change={name: data[:-40] + bytes([data[-40] ^ 1]) + data[-39:]})
    result = verify_core.verify_path(str(bad), trusted_keys=[pem.read_bytes()])
    assert not result.ok
    assert name in result.objects(), [p.to_json() for p in result.problems]


def test_an_unreadable_master_fails_the_clip_and_leaves_nothing(tmp_path: Path) -> None:
    """Segments are fetched by a pool of threads and the MP4s made meanwhile: a master that cannot be
    read still fails the whole clip (MediaMissing naming it), with no partial zip, work files or
    threads left behind."""
    import threading

    from tests.clip.conftest import gap_scenario
    from tests.integrity.builder import build
    from tonglu.integrity.errors import MediaMissing

    b = build(tmp_path / "s", gap_scenario())
    gone = b.seg_key("panorama", "audio", 1)
    b.evidence_dir.joinpath(*gone.split("/")).unlink()
    before = set(threading.enumerate())
    out = tmp_path / "clip.zip"
    with pytest.raises(MediaMissing, match=gone):
        export_clip(b.review, b.sid, T0, T0 + 6 * S, out)
    assert not out.exists() and not out.with_name(out.name + ".part").exists()
    assert not list(b.settings.data_dir.glob("tonglu-clip-*"))
    assert not [t for t in threading.enumerate() if t not in before and t.name.startswith("clip-")]
