"""Cross-talk end to end: both microphones hear the same speech (one 12 dB quieter) -> each sentence once,
attributed to the louder source; two different clips at once -> both kept. Real Whisper tiny.en, real worker
processes, Opus/WebM segments as the recorder writes them; live draft, live stream and final version."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.transcribe.conftest import LIBRIVOX, first_word_s, load, reference
from tests.transcribe.test_session import wait_for
from tonglu.bench.evaluation import error_rate, join_lines
from tonglu.bench.simulate import SimSession
from tonglu.config import Settings
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool
from tonglu.transcribe import exports
from tonglu.transcribe.audio import RATE
from tonglu.transcribe.service import TranscriptService
from tonglu.transcribe.source import evidence_reader
from tonglu.transcribe.workers import start_workers

pytestmark = [pytest.mark.whisper, pytest.mark.slow]
T0 = 1_717_300_000_000_000_000
QUIET = 10 ** (-12 / 20)  # -12 dB: the microphone on the far side of the table


@dataclass
class Phase:
    name: str
    start_s: float  # clip start on the session timeline
    end_s: float
    clips: dict[str, Path]  # source -> clip it plays
    louder: str | None  # the source that hears it best (None: different speech on each source)


@dataclass
class Outcome:
    phases: list[Phase]
    final: dict[str, Any]
    live: dict[str, Any]
    shown: list[dict[str, Any]]  # what a console following the live stream shows at the end


def _timeline() -> tuple[dict[str, np.ndarray], list[Phase]]:
    # same speech, main louder | same speech, panorama louder | different speech on each, at once
    plan = [
        ("main louder", {"main": LIBRIVOX[0], "panorama": LIBRIVOX[0]}, "main"),
        ("panorama louder", {"main": LIBRIVOX[3], "panorama": LIBRIVOX[3]}, "panorama"),
        ("two speakers", {"main": LIBRIVOX[2], "panorama": LIBRIVOX[1]}, None),
    ]
    parts: dict[str, list[np.ndarray]] = {"main": [], "panorama": []}
    phases, t = [], 1.0
    for source in parts:
        parts[source].append(np.zeros(round(t * RATE), np.float32))
    for name, clips, louder in plan:
        pcm = {s: load(p) for s, p in clips.items()}
        length = max(len(x) for x in pcm.values())
        for source, x in pcm.items():
            gain = QUIET if louder is not None and source != louder else 1.0
            parts[source].append(np.concatenate([x * gain, np.zeros(length - len(x) + 2 * RATE, np.float32)]))
        phases.append(Phase(name, t, t + length / RATE, clips, louder))
        t += length / RATE + 2.0
    return {s: np.concatenate(p).astype(np.float32) for s, p in parts.items()}, phases


def _follow(client_view: list[dict[str, Any]], items: list[tuple[int, dict[str, Any]]]) -> None:
    """Apply live events the way the console does: skip duplicates, remove what a line replaces."""
    for line_id, item in items:
        if item["kind"] != "line":
            continue
        gone = set(item.get("replaces", []))
        client_view[:] = [x for x in client_view if x["id"] not in gone]
        client_view.append({**item, "id": line_id})


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    root = tmp_path_factory.mktemp("crosstalk")
    settings = Settings.from_env(
        {
            "TONGLU_DATA_DIR": str(root / "data"),
            "TONGLU_RETENTION_SECONDS": "60",
            "TONGLU_WHISPER_MODEL": "tiny.en",
            "TONGLU_WHISPER_LANGUAGE": "en",
        }
    )
    spool = Spool(settings.spool_dir)
    ledger = Ledger(settings.ledger_dir, spool, SiteKey.load_or_create(settings.keys_dir))
    audio, phases = _timeline()
    sid = "S-crosstalk"
    sim = SimSession(spool, ledger, sid)
    for source, pcm in audio.items():
        sim.add_track(source, pcm, T0)
    handle = start_workers(settings, workers=2, model="tiny.en", lease_s=10, spool=spool, ledger=ledger)
    svc = TranscriptService(settings, spool, ledger, read=evidence_reader(settings))
    shown: list[dict[str, Any]] = []
    after = 0

    def poll() -> None:
        nonlocal after
        items = svc.live_lines(sid, after)
        if items:
            after = items[-1][0]
        _follow(shown, items)

    try:
        while any(not t.done for t in sim.tracks.values()):
            for source in ("main", "panorama"):
                sim.seal_next(source, 4.0)
            time.sleep(0.4)
            poll()
        sim.stop()
        wait_for(lambda: any(v["origin"] == "final" for v in svc.versions(sid)), 180, "final version")
        poll()
        versions = {v["origin"]: v["version"] for v in svc.versions(sid)}
        yield Outcome(phases, svc.version(sid, versions["final"]), svc.version(sid, versions["live"]), shown)
    finally:
        handle.stop()


def _in(phase: Phase, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    lo = T0 + round((phase.start_s - 0.5) * 1e9)
    hi = T0 + round((phase.end_s + 0.5) * 1e9)
    return [x for x in lines if lo <= x["start_ns"] <= hi]


def _check_same_speech(phase: Phase, lines: list[dict[str, Any]], bound: float) -> None:
    mine = _in(phase, lines)
    assert mine, f"{phase.name}: no line"
    assert {x["source"] for x in mine} == {phase.louder}, [(x["source"], x["text"]) for x in mine]
    other = "main" if phase.louder == "panorama" else "panorama"
    assert all(x["heard_on"] == [other] for x in mine), [(x["text"], x["heard_on"]) for x in mine]
    # once: a doubled sentence would show as ~100 % insertions
    truth = reference(phase.clips[phase.louder])  # type: ignore[index]
    assert error_rate([truth], [join_lines([x["text"] for x in mine], "en")], "en") <= bound


def test_same_speech_on_both_microphones_appears_once_from_the_louder(outcome: Outcome) -> None:
    for phase in outcome.phases[:2]:
        _check_same_speech(phase, outcome.final["lines"], 0.2)
        left_out = _in(phase, outcome.final["duplicates"])
        assert left_out and all(d["kept"]["source"] == phase.louder for d in left_out)
        start_ns = T0 + round((phase.start_s + first_word_s(phase.clips["main"])) * 1e9)
        assert abs(_in(phase, outcome.final["lines"])[0]["start_ns"] - start_ns) < 500_000_000
    vtt = exports.to_vtt(outcome.final)
    assert vtt.count("<v 被讯问人") >= 2 and vtt.count("<v 讯问人>") >= 2  # one per source-phase, not doubled


def test_live_draft_and_live_stream_show_it_once_too(outcome: Outcome) -> None:
    for phase in outcome.phases[:2]:
        _check_same_speech(phase, outcome.live["lines"], 0.35)
        shown = _in(phase, outcome.shown)
        assert {x["source"] for x in shown} == {phase.louder}, [(x["source"], x["text"]) for x in shown]
        truth = reference(phase.clips["main"])
        assert error_rate([truth], [join_lines([x["text"] for x in shown], "en")], "en") <= 0.35


def test_two_different_clips_at_once_are_both_kept(outcome: Outcome) -> None:
    phase = outcome.phases[2]
    for doc in (outcome.final, outcome.live):
        lines = _in(phase, doc["lines"])
        for source, clip in phase.clips.items():
            said = [x["text"] for x in lines if x["source"] == source]
            assert error_rate([reference(clip)], [join_lines(said, "en")], "en") <= 0.35, (source, said)
            assert all(x["heard_on"] == [] for x in lines if x["source"] == source)
    shown = _in(phase, outcome.shown)
    assert {x["source"] for x in shown} == {"main", "panorama"}
