"""A recorded session gets a live draft while recording and a final version after stop (real Whisper tiny.en,
real worker processes, Opus/WebM segments muxed by the recorder's SegmentWriter)."""

from __future__ import annotations

import io
import json
import time
from typing import ClassVar

import pytest
from fastapi.testclient import TestClient

from tests.transcribe.conftest import LIBRIVOX, Env, compose
from tonglu.bench.evaluation import error_rate, join_lines
from tonglu.bench.simulate import SimSession
from tonglu.transcribe.service import TranscriptService
from tonglu.transcribe.source import evidence_reader
from tonglu.transcribe.workers import start_workers
from tonglu.web.auth import Principal
from tonglu.web.services import Services

pytestmark = [pytest.mark.whisper, pytest.mark.slow]
T0 = 1_717_200_000_000_000_000


def wait_for(pred, timeout: float, what: str, step: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class _Accounts:
    """Bearer tokens for the role checks (the accounts system itself belongs to the web area)."""

    TOKENS: ClassVar[dict[str, Principal]] = {
        "t-int": Principal("li4", "interviewer", display_name="李四"),  # listed on the simulated session
        "t-rev": Principal("rev", "reviewer"),
        "t-aud": Principal("aud", "auditor"),
    }

    def resolve_bearer(self, token: str) -> Principal | None:
        return self.TOKENS.get(token)

    def resolve_cookie(self, request: object) -> None:
        return None


def test_live_draft_then_final_version_with_wall_clock_lines(env: Env) -> None:
    sid = "S-live-1"
    # panorama (interviewer) and main (suspect) speak in turns with known silences
    q_audio, q_placed = compose([(LIBRIVOX[1], 1.0), (LIBRIVOX[4], 9.0)])
    a_audio, a_placed = compose([(LIBRIVOX[2], 5.5), (LIBRIVOX[3], 6.0)])
    sim = SimSession(env.spool, env.ledger, sid)
    sim.add_track("panorama", q_audio, T0)
    sim.add_track("main", a_audio, T0)
    handle = start_workers(env.settings, workers=2, model="tiny.en", lease_s=10, spool=env.spool, ledger=env.ledger)
    services = Services.local(env.settings)
    services.transcripts = TranscriptService(env.settings, env.spool, env.ledger, read=evidence_reader(env.settings))
    services.accounts = _Accounts()
    from tonglu.web.audit import AuditLog

    services.audit = AuditLog.from_settings(env.settings, env.spool)
    client = TestClient(__import__("tonglu.web.app", fromlist=["create_app"]).create_app(services))
    try:
        corrupt_index = 5
        sealed = 0
        live_seen_before_stop = False
        while any(not t.done for t in sim.tracks.values()):
            for source in ("panorama", "main"):
                t = sim.tracks[source]
                sim.seal_next(source, 4.0, corrupt=(source == "main" and t.index == corrupt_index))
                sealed += 1
            time.sleep(0.4)
        # live lines arrive before the session is stopped
        wait_for(lambda: len(services.transcripts.live_lines(sid)) >= 3, 120, "live lines while recording")
        r = client.get(f"/api/sessions/{sid}/transcript", headers={"Authorization": "Bearer t-rev"})
        assert r.status_code == 200, r.text
        live = r.json()
        assert live["version"] == 0 and live["live"] is True and live["draft"] is True
        live_seen_before_stop = any(ln["text"] for ln in live["lines"])
        assert live_seen_before_stop
        sim.stop()
        versions = wait_for(
            lambda: (
                [v for v in services.transcripts.versions(sid) if v["origin"] == "final"]
                and services.transcripts.versions(sid)
            ),
            180,
            "final version",
        )
        assert [v["origin"] for v in versions] == ["live", "final"]
        assert [v["version"] for v in versions] == [1, 2]
        assert all(v["model"]["name"] == "whisper-tiny.en" and len(v["model"]["sha256"]) == 64 for v in versions)

        r = client.get(f"/api/sessions/{sid}/transcript", headers={"Authorization": "Bearer t-int"})
        final = r.json()
        assert final["version"] == 2 and final["origin"] == "final" and final["draft"] is True
        assert all(set(ln) >= {"start", "end", "speaker", "text"} for ln in final["lines"])
        assert final["lines"][0]["start"].endswith("Z")
        # every segment it was made from, with hashes
        made_from = {s["key"]: s["sha256"] for s in final["segments"]}
        for t in sim.tracks.values():
            for rec in t.sealed:
                assert made_from[rec.key] == rec.sha256
        # the corrupt segment is marked untranscribable; the rest proceeds
        bad_rec = sim.tracks["main"].sealed[corrupt_index]
        assert [g["segment_key"] for g in final["untranscribable"]] == [bad_rec.key]
        assert final["untranscribable"][0]["start_ns"] == bad_rec.wall_first_ns

        # lines link to the right wall-clock moments and speakers; text is right
        for placed, speaker in [(q_placed, "讯问人"), (a_placed, "被讯问人 张三")]:
            for p in placed:
                truth_ns = T0 + round(p.speech_start_s * 1e9)
                span = (bad_rec.wall_first_ns, bad_rec.wall_last_ns)
                if speaker != "讯问人" and span[0] <= truth_ns <= span[1]:
                    continue
                near = [ln for ln in final["lines"] if abs(ln["start_ns"] - truth_ns) < 500_000_000]
                assert near, f"no line within 0.5 s of {p.wav.name} at {p.speech_start_s:.2f} s"
                assert near[0]["speaker"] == speaker
        q_lines = [ln["text"] for ln in final["lines"] if ln["source"] == "panorama"]
        assert error_rate([join_lines([p.text for p in q_placed], "en")], [join_lines(q_lines, "en")], "en") <= 0.15
        # the live draft (version 1) has the same words, within a looser bound (windows cut at segment edges)
        v1 = client.get(f"/api/sessions/{sid}/transcript?version=1", headers={"Authorization": "Bearer t-rev"}).json()
        assert v1["origin"] == "live"
        live_q = [ln["text"] for ln in v1["lines"] if ln["source"] == "panorama"]
        assert error_rate([join_lines([p.text for p in q_placed], "en")], [join_lines(live_q, "en")], "en") <= 0.35

        # exports
        vtt = client.get(f"/api/sessions/{sid}/transcript.vtt", headers={"Authorization": "Bearer t-rev"})
        assert vtt.status_code == 200 and vtt.text.startswith("WEBVTT") and "<v 讯问人>" in vtt.text
        srt = client.get(f"/api/sessions/{sid}/transcript.srt", headers={"Authorization": "Bearer t-rev"})
        assert srt.status_code == 200 and "讯问人：" in srt.text
        dx = client.get(f"/api/sessions/{sid}/transcript.docx", headers={"Authorization": "Bearer t-rev"})
        assert dx.status_code == 200
        from docx import Document

        paras = [p.text for p in Document(io.BytesIO(dx.content)).paragraphs]
        assert any("问：" in t for t in paras) and any("答：" in t for t in paras)

        # server-sent events: every live line, the versions, then the end
        events = []
        with client.stream(
            "GET", f"/api/sessions/{sid}/transcript/live", headers={"Authorization": "Bearer t-rev"}
        ) as s:
            assert s.headers["content-type"].startswith("text/event-stream")
            for line in s.iter_lines():
                if line.startswith("event: "):
                    events.append(line[7:])
        assert events.count("line") == len(services.transcripts.live_lines(sid))
        assert events.count("version") == 2 and events[-1] == "end"

        # corrections: roles, validation, new version with who/when and the diff
        body = {"lines": [dict(ln) for ln in final["lines"]]}
        body["lines"][0]["text"] = "He was not an ill-disposed young man, sir."
        assert (
            client.post(
                f"/api/sessions/{sid}/transcript/corrections",
                json=body,
                headers={"Authorization": "Bearer t-rev"},
            ).status_code
            == 403
        )
        assert client.post(f"/api/sessions/{sid}/transcript/corrections", json=body).status_code == 401
        bad_body = {"lines": [{"start": "yesterday", "end": "today", "text": "x"}]}
        r = client.post(
            f"/api/sessions/{sid}/transcript/corrections",
            json=bad_body,
            headers={"Authorization": "Bearer t-int"},
        )
        assert r.status_code == 422 and "invalid correction" in r.text
        r = client.post(
            f"/api/sessions/{sid}/transcript/corrections",
            json=body,
            headers={"Authorization": "Bearer t-int"},
        )
        assert r.status_code == 201, r.text
        corr = r.json()
        assert corr["version"] == 3 and corr["corrected_by"] == "li4" and corr["draft"] is True
        assert corr["diff"][0]["after"][0]["text"] == "He was not an ill-disposed young man, sir."
        r = client.post(
            f"/api/sessions/{sid}/transcript/corrections",
            json={**body, "verified": True},
            headers={"Authorization": "Bearer t-int"},
        )
        assert r.json()["draft"] is False and r.json()["verified_by"] == "li4"
        assert r.json()["diff_from_asr"] == corr["diff"]
        listed = client.get(f"/api/sessions/{sid}/transcript/versions", headers={"Authorization": "Bearer t-rev"})
        assert [v["origin"] for v in listed.json()["versions"]] == [
            "live",
            "final",
            "correction",
            "correction",
        ]
        assert (
            client.get(f"/api/sessions/{sid}/transcript", headers={"Authorization": "Bearer t-aud"}).status_code == 403
        )
        assert client.get("/api/sessions/nope/transcript", headers={"Authorization": "Bearer t-rev"}).status_code == 404
        assert (
            client.get(
                f"/api/sessions/{sid}/transcript?version=99", headers={"Authorization": "Bearer t-rev"}
            ).status_code
            == 404
        )
        # views, exports and corrections are audited
        actions = {r["action"] for r in services.audit.query(obj=f"session:{sid}/transcript")}
        assert actions >= {
            "transcript.view",
            "transcript.export.docx",
            "transcript.correct",
            "transcript.verify",
            "transcript.live",
            "transcript.versions",
        }
        assert services.audit.query(action="transcript.verify")[0]["user"] == "li4"
        # versions are in the evidence spool under their keys, one object per version, and in the manifest
        keys = [i.key for i in env.spool.pending() if "/transcripts/" in i.key]
        assert keys == [f"sessions/{sid}/transcripts/{n:04d}.json" for n in (1, 2, 3, 4)]
        entries = [e for e in env.ledger.entries(sid) if e.kind == "transcript"]
        assert [e.body["version"] for e in entries] == [1, 2, 3, 4]
        stored = json.loads(
            next(i for i in env.spool.pending() if i.key.endswith("/transcripts/0002.json")).data_path.read_bytes()
        )
        assert stored == {k: v for k, v in final.items() if k != "live"}
    finally:
        handle.stop()
