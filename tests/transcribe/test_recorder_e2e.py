"""Through the real recorder: an aiortc WHIP publisher sends speech (Opus over RTP, real sockets), the
recorder seals its own audio segments, and the transcription service drafts them live and finally."""

from __future__ import annotations

import asyncio
import fractions
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamTrack

from tests.recorder.conftest import make_settings, run_server
from tests.recorder.peers import WhipPublisher
from tests.transcribe.conftest import LIBRIVOX, compose
from tests.transcribe.test_session import wait_for
from tonglu.bench.evaluation import error_rate, join_lines
from tonglu.transcribe.service import TranscriptService
from tonglu.transcribe.workers import start_workers

pytestmark = [pytest.mark.whisper, pytest.mark.slow]


class Speech(MediaStreamTrack):
    """Mono speech at 48 kHz in 20 ms frames, paced by the wall clock; remembers when it started."""

    kind = "audio"

    def __init__(self, pcm16k: np.ndarray) -> None:
        super().__init__()
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        frame = av.AudioFrame.from_ndarray(
            (pcm16k * 32767).astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = 16000
        self.pcm = np.concatenate(
            [f.to_ndarray().reshape(-1) for f in [*resampler.resample(frame), *resampler.resample(None)]]
        )
        self.started_ns: int | None = None
        self._n = 0

    async def recv(self) -> av.AudioFrame:
        if self.started_ns is None:
            self.started_ns = time.time_ns()
        delay = self.started_ns / 1e9 + self._n * 0.02 - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        chunk = self.pcm[self._n * 960 : (self._n + 1) * 960]
        if len(chunk) < 960:
            chunk = np.zeros(960, np.int16)  # silence after the speech: the session keeps recording
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1).astype(np.int16), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self._n * 960
        frame.time_base = fractions.Fraction(1, 48000)
        self._n += 1
        return frame


def test_recorder_made_segments_get_live_and_final_transcripts(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, TONGLU_WHISPER_MODEL="tiny.en", TONGLU_WHISPER_LANGUAGE="en")
    audio, placed = compose([(LIBRIVOX[1], 1.0), (LIBRIVOX[0], 2.0)], tail_s=1.0)
    servers = run_server(settings)
    server = next(servers)
    handle = start_workers(
        settings, workers=1, model="tiny.en", lease_s=10, spool=server.services.spool, ledger=server.services.ledger
    )
    svc = TranscriptService(settings, server.services.spool, server.services.ledger)
    loop = asyncio.new_event_loop()  # the publisher's loop runs in its own thread while we wait here
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()

    def run(coro, timeout: float = 60):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    try:
        s = server.create_session()
        sid, main = s["id"], s["sources"]["main"]
        track = Speech(audio)

        async def publish() -> WhipPublisher:  # aiortc objects belong to the loop they are made in
            pub = WhipPublisher(main["whip_url"], main["token"], video=False, audio=False)
            pub.pc.addTransceiver(track, direction="sendonly")
            await pub.start()
            return pub

        pub = run(publish())
        run(pub.wait_connected())
        # live: the first sentence is drafted while the session is still recording
        first_seen = wait_for(
            lambda: [x for _, x in svc.live_lines(sid) if x["kind"] == "line"], 60, "a live line while recording"
        )
        assert svc.session_facts(sid)[2] is False  # not stopped
        assert first_seen[0]["speaker"].startswith("被讯问人")
        assert track.started_ns is not None
        time.sleep(max(0.0, len(audio) / 16000 + 1.0 - (time.time_ns() - track.started_ns) / 1e9))
        with server.api() as c:
            assert c.post(f"/api/sessions/{sid}/stop", json={"reason": "讯问结束"}).status_code == 200
        run(pub.close())
        wait_for(lambda: any(v["origin"] == "final" for v in svc.versions(sid)), 120, "the final version")
        final = svc.current(sid)
        recorded = {
            e.body["key"]
            for e in server.services.ledger.entries(sid)
            if e.kind == "segment" and e.body["media"] == "audio"
        }
        assert {x["key"] for x in final["segments"]} == recorded and len(recorded) >= 4
        hyp = join_lines([x["text"] for x in final["lines"]], "en")
        ref = join_lines([p.text for p in placed], "en")
        assert error_rate([ref], [hyp], "en") <= 0.15, hyp
        assert track.started_ns is not None
        for p in placed:  # each sentence's line starts within 0.5 s of when its first word was sent
            truth = track.started_ns + round(p.speech_start_s * 1e9)
            assert any(abs(x["start_ns"] - truth) <= 500_000_000 for x in final["lines"]), (
                p.wav.name,
                (truth - track.started_ns) / 1e9,
                [((x["start_ns"] - track.started_ns) / 1e9, x["text"]) for x in final["lines"]],
            )
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(10)
        loop.close()
        handle.stop()
        servers.close()
