"""A recorded session transcribed by real Whisper (tiny.en, LibriVox speech on two microphones), compared
with hand-made 笔录 DOCX files: the record as spoken gives no finding despite ASR errors; a flipped
negation, a deleted answer and an inserted answer are each found and linked to the right moment."""

from __future__ import annotations

import pytest

from tests.bilu.builders import record_docx
from tests.transcribe.conftest import LIBRIVOX, Env, compose, reference
from tonglu.bench.simulate import SimSession
from tonglu.integrity.bilu_store import RecordStore
from tonglu.integrity.evidence import SpoolStoreEvidence
from tonglu.transcribe.service import TranscriptService
from tonglu.transcribe.source import evidence_reader

pytestmark = [pytest.mark.whisper, pytest.mark.slow]
T0 = 1_717_200_000_000_000_000
S = 1_000_000_000


def test_record_against_a_whisper_transcript(env: Env, tiny_engine) -> None:  # type: ignore[no-untyped-def]
    sid = "S-bilu-rec"
    c = LIBRIVOX
    # interviewer (panorama): Q1 1.0-8.1 s, Q2 13.0-19.05 s, Q3 26.0-33.1 s
    q_audio, q_placed = compose([(c[0], 1.0), (c[3], 4.9), (c[0], 6.95)])
    # suspect (main): A1 9.0-12.0 s ("he was not an ill disposed young man"), A2 20.0-25.3 s, A3 34.0-37.3 s
    a_audio, a_placed = compose([(c[1], 9.0), (c[2], 8.0), (c[4], 8.7)])
    sim = SimSession(env.spool, env.ledger, sid)
    sim.add_track("panorama", q_audio, T0)
    sim.add_track("main", a_audio, T0)
    sim.seal_all(4.0)
    sim.stop()
    svc = TranscriptService(env.settings, env.spool, env.ledger, read=evidence_reader(env.settings))
    transcript = svc.transcribe_now(sid, engine=tiny_engine)
    assert transcript["lines"], transcript
    store = RecordStore(env.settings.data_dir / "records", env.ledger, env.spool, SpoolStoreEvidence(env.spool))

    said = [
        ("问", q_placed[0].text), ("答", a_placed[0].text),
        ("问", q_placed[1].text), ("答", a_placed[1].text),
        ("问", q_placed[2].text), ("答", a_placed[2].text),
    ]  # fmt: skip
    store.import_bytes(sid, record_docx(said), name="as-said.docx", by="li4")
    same = store.comparison(sid)
    assert same["transcript"]["version"] == transcript["version"]
    assert same["findings"] == [], same["rows"]
    assert same["summary"]["matched"] == 3

    assert reference(c[1]) == "he was not an ill disposed young man"
    edited = [
        ("问", q_placed[0].text),
        ("答", "he was an ill disposed young man"),  # negation removed
        ("答", "and i took the money from his drawer that night"),  # never said
        ("问", q_placed[1].text),  # its answer (A2) left out
        ("问", q_placed[2].text),
        ("答", a_placed[2].text),
    ]
    entry, created = store.import_bytes(sid, record_docx(edited), name="edited.docx", by="li4")
    assert created and entry["version"] == 2
    doc = store.comparison(sid)
    assert doc["document"]["sha256"] == entry["sha256"]
    got = {f["subkind"] or f["kind"]: f for f in doc["findings"]}
    assert sorted(got) == ["inserted", "negation_flipped", "omitted"], doc["findings"]

    def at(placed_offset_s: float) -> int:
        return T0 + round(placed_offset_s * S)

    a1, a2 = a_placed[0], a_placed[1]
    flipped = got["negation_flipped"]
    assert abs(flipped["start_ns"] - at(a1.speech_start_s)) < 0.6 * S
    assert flipped["detail"]["negations"] == {"said": ["not"], "record": []}
    omitted = got["omitted"]
    assert abs(omitted["start_ns"] - at(a2.speech_start_s)) < 0.6 * S
    assert omitted["end_ns"] <= at(a2.offset_s + 5.3) + S
    inserted = got["inserted"]  # between the end of A1 (12.0 s) and the start of Q2 (13.0 s)
    assert at(11.0) <= inserted["start_ns"] <= at(12.5) and at(12.5) <= inserted["end_ns"] <= at(14.0)
