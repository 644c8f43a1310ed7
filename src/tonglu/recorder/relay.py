"""Live fan-out of the *received encoded frames* to viewers (no decoding, no re-encoding).

One `TrackTap` per (session, source, track) outlives peers, like `TrackState`. The recorder's
packet tap publishes every assembled frame into it on the event loop; when nobody watches, the
cost is one attribute read and an empty-list test per frame.

Each viewer holds a `Subscriber`: a bounded ring that never pushes back on the recorder.
- audio: on overflow the oldest frame is dropped;
- video: on overflow everything queued is dropped (those frames depend on the one lost) and the
  viewer waits for the next keyframe; the tap then asks the publisher for one (PLI), at most
  once per `KEYFRAME_INTERVAL_NS` per track, however many viewers want it.
A new video viewer starts waiting for a keyframe too, so it asks for one at once.

Privacy (a lawyer consultation, `recorder.consultation`): a tap may be private to a set of viewer
*parties* (`TrackTap.private_to`); frames then reach only subscribers of those parties, the others
get nothing (`withheld` counts) and wait for a keyframe when it ends. Frames are never decoded.

Everything here is sans-I/O (the caller passes `now_ns`); `recorder.whep` is the aiortc adapter.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tonglu.recorder.codecs import h264_keyframe, vp8_keyframe

log = logging.getLogger(__name__)

KEYFRAME_INTERVAL_NS = 500_000_000
VIDEO_QUEUE_FRAMES = 30  # about 1 s at 30 fps: a viewer further behind skips to the next keyframe
AUDIO_QUEUE_FRAMES = 50  # 1 s of 20 ms Opus packets
CLOCK_RATE = {"video": 90000, "audio": 48000}


@dataclass(frozen=True)
class RelayFrame:
    kind: str  # "video" | "audio"
    codec: str  # "vp8" | "h264" | "opus"
    data: bytes  # one complete encoded frame (H.264: Annex-B access unit)
    rtp: int  # the publisher's RTP time, unwrapped to 64 bit
    keyframe: bool

    @property
    def clock_rate(self) -> int:
        return CLOCK_RATE[self.kind]


def is_keyframe(codec: str, data: bytes) -> bool:
    if codec == "vp8":
        return vp8_keyframe(data)[0]
    if codec == "h264":
        return h264_keyframe(data)[0]
    return True


class KeyframeGate:
    """Rate limit for keyframe requests sent upstream on behalf of viewers."""

    def __init__(self, interval_ns: int = KEYFRAME_INTERVAL_NS) -> None:
        self.interval_ns = interval_ns
        self._last_ns: int | None = None
        self.requested = 0
        self.suppressed = 0

    def allow(self, now_ns: int) -> bool:
        if self._last_ns is not None and now_ns - self._last_ns < self.interval_ns:
            self.suppressed += 1
            return False
        self._last_ns = now_ns
        self.requested += 1
        return True


class Subscriber:
    """One viewer's bounded queue for one track (sans-I/O).

    `offer()` is called by the tap for every published frame and returns True when this viewer
    needs a keyframe from upstream. `take()` returns the next frame or None when empty.
    `on_ready` (set by the adapter) is called whenever a frame was queued or the stream closed.
    """

    def __init__(
        self, viewer_id: str, kind: str, codec: str | None = None, limit: int | None = None, party: str | None = None
    ) -> None:
        self.viewer_id = viewer_id
        self.party = party  # the viewer's own party (a remote source, or "room"); None for staff
        self.kind = kind
        self.codec = codec  # frames of another codec are not delivered (the viewer negotiated this one)
        self.limit = limit or (VIDEO_QUEUE_FRAMES if kind == "video" else AUDIO_QUEUE_FRAMES)
        self.queue: deque[RelayFrame] = deque()
        self.waiting_key = kind == "video"
        self.closed = False
        self.delivered = 0
        self.dropped = 0  # lost to overflow (a slow viewer)
        self.skipped = 0  # not delivered while waiting for a keyframe
        self.mismatched = 0  # published in a codec this viewer did not negotiate
        self.withheld = 0  # not forwarded: the source was private to other parties (a consultation)
        self.on_ready: Callable[[], None] | None = None

    def offer(self, frame: RelayFrame) -> bool:
        if self.closed:
            return False
        if self.codec is not None and frame.codec != self.codec:
            self.mismatched += 1
            return False
        if self.waiting_key:
            if not frame.keyframe:
                self.skipped += 1
                return True
            self.waiting_key = False
        want_key = False
        if len(self.queue) >= self.limit:
            if self.kind == "video":
                self.dropped += len(self.queue)
                self.queue.clear()
                if not frame.keyframe:
                    self.dropped += 1
                    self.waiting_key = True
                    self._ready()
                    return True
                want_key = False
            else:
                self.queue.popleft()
                self.dropped += 1
        self.queue.append(frame)
        self._ready()
        return want_key

    def take(self) -> RelayFrame | None:
        if not self.queue:
            return None
        self.delivered += 1
        return self.queue.popleft()

    def close(self) -> None:
        self.closed = True
        self.queue.clear()
        self._ready()

    def _ready(self) -> None:
        if self.on_ready is not None:
            self.on_ready()

    def stats(self) -> dict[str, Any]:
        return {
            "queued": len(self.queue),
            "delivered": self.delivered,
            "dropped": self.dropped,
            "skipped_waiting_for_keyframe": self.skipped,
            "codec_mismatch": self.mismatched,
            "withheld": self.withheld,
            "waiting_for_keyframe": self.waiting_key,
        }


@dataclass
class TrackTap:
    """Fan-out point of one (session, source, track)."""

    session: str
    source: str
    track: str
    kind: str
    subscribers: list[Subscriber] = field(default_factory=list)
    upstream: Callable[[], None] | None = None  # asks the current publisher for a keyframe (PLI)
    gate: KeyframeGate = field(default_factory=KeyframeGate)
    codec: str | None = None  # the codec of the last frame published while someone watched
    published: int = 0
    private_to: frozenset[str] | None = None  # only these viewer parties receive frames (consultation)

    def publish(self, codec: str, data: bytes, rtp: int, now_ns: int) -> None:
        """Called by the recorder for every received frame, on the event loop."""
        if not self.subscribers:
            return
        codec = codec.lower()
        self.codec = codec
        self.published += 1
        frame = RelayFrame(self.kind, codec, data, rtp, self.kind != "video" or is_keyframe(codec, data))
        want = False
        private = self.private_to
        for sub in self.subscribers:
            if private is not None and sub.party not in private:
                sub.withheld += 1
                if sub.kind == "video":
                    sub.waiting_key = True  # when forwarding resumes it starts on a keyframe
                continue
            want = sub.offer(frame) or want
        if want:
            self.request_keyframe(now_ns)

    def subscribe(self, sub: Subscriber, now_ns: int) -> None:
        self.subscribers.append(sub)
        if sub.waiting_key:
            self.request_keyframe(now_ns)

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self.subscribers:
            self.subscribers.remove(sub)

    def request_keyframe(self, now_ns: int) -> bool:
        """Ask upstream for a keyframe unless one was asked for within the gate's interval."""
        if self.kind != "video" or self.upstream is None or not self.gate.allow(now_ns):
            return False
        try:
            self.upstream()
        except Exception:  # a publisher that is going away; the next request retries
            log.exception("keyframe request failed for %s/%s/%s", self.session, self.source, self.track)
            return False
        return True


class Relay:
    """All taps of one recorder process."""

    def __init__(self) -> None:
        self.taps: dict[tuple[str, str, str], TrackTap] = {}
        self.private: dict[tuple[str, str], frozenset[str]] = {}  # (session, source) -> viewer parties

    def track(self, session: str, source: str, track: str, kind: str) -> TrackTap:
        key = (session, source, track)
        tap = self.taps.get(key)
        if tap is None:
            tap = self.taps[key] = TrackTap(session, source, track, kind)
            tap.private_to = self.private.get((session, source))
        return tap

    def set_private(self, session: str, source: str, parties: frozenset[str] | None, now_ns: int) -> None:
        """Forward `source` only to viewers of `parties` (None: to everybody again; video viewers
        that were left out then get a keyframe asked for)."""
        if parties is None:
            self.private.pop((session, source), None)
        else:
            self.private[(session, source)] = parties
        for (sid, src, _track), tap in self.taps.items():
            if sid == session and src == source:
                tap.private_to = parties
                if parties is None and any(s.waiting_key for s in tap.subscribers):
                    tap.request_keyframe(now_ns)

    def find(self, session: str, source: str, track: str) -> TrackTap | None:
        return self.taps.get((session, source, track))

    def close_session(self, session: str) -> None:
        for pkey in [k for k in self.private if k[0] == session]:
            del self.private[pkey]
        for key in [k for k in self.taps if k[0] == session]:
            tap = self.taps.pop(key)
            for sub in list(tap.subscribers):
                sub.close()
            tap.subscribers.clear()
            tap.upstream = None

    def watched(self, session: str) -> bool:
        return any(t.subscribers for k, t in self.taps.items() if k[0] == session)


class Rebaser:
    """Maps a track's publisher RTP times onto a viewer's continuous timeline starting at 0.

    A publisher that reconnects starts a new random RTP origin; the viewer's stream continues
    one frame (`step`) after the last one instead of jumping.
    """

    def __init__(self, clock_rate: int, step: int, max_jump_s: float = 10.0) -> None:
        self.step = step
        self.max_jump = int(clock_rate * max_jump_s)
        self._last_in: int | None = None
        self._last_out = 0
        self.resyncs = 0

    def map(self, rtp: int) -> int:
        if self._last_in is None:
            out = 0
        else:
            delta = rtp - self._last_in
            if delta < 0 or delta > self.max_jump:
                delta = self.step
                self.resyncs += 1
            out = self._last_out + delta
        self._last_in, self._last_out = rtp, out
        return out
