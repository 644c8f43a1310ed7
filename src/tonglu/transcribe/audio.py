"""Decode audio (master segments or files) to 16 kHz mono float32 with PyAV, and lay segments on a timeline.

Runs in worker processes, never on an event loop.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tonglu.transcribe.errors import AudioDecodeError, SegmentMismatch

RATE = 16_000


def decode(source: bytes | Path | str) -> np.ndarray:
    """All audio of the first audio stream, resampled to 16 kHz mono float32 in [-1, 1]."""
    import av  # heavy import kept local

    handle: io.BytesIO | str = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    chunks: list[np.ndarray] = []
    try:
        with av.open(handle, "r") as container:
            if not container.streams.audio:
                raise AudioDecodeError("no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except AudioDecodeError:
        raise
    except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
        raise AudioDecodeError(f"cannot decode audio: {exc}") from exc
    if not chunks:
        raise AudioDecodeError("no audio frames could be decoded")
    return np.concatenate(chunks).astype(np.float32, copy=False)


@dataclass(frozen=True)
class SegmentRef:
    """What a worker needs to know about one sealed audio segment (from its manifest entry)."""

    source: str
    track: str
    index: int
    key: str
    sha256: str
    wall_first_ns: int
    wall_last_ns: int


@dataclass(frozen=True)
class BadSpan:
    start_ns: int
    end_ns: int
    segment: SegmentRef
    reason: str


@dataclass
class Window:
    start_ns: int
    audio: np.ndarray
    bad: list[BadSpan]

    @property
    def duration_s(self) -> float:
        return len(self.audio) / RATE

    def wall_ns(self, offset_s: float) -> int:
        return self.start_ns + round(offset_s * 1e9)


def assemble(
    segments: Sequence[SegmentRef],
    read: Callable[[str], bytes],
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> Window:
    """Decode each segment and place it at its wall-clock offset; holes stay silent (zeros).

    A segment whose bytes do not match its manifest SHA-256 or cannot be decoded becomes a BadSpan
    (marked untranscribable by the caller); the others proceed.
    """
    if not segments:
        raise ValueError("no segments")
    start_ns = segments[0].wall_first_ns if start_ns is None else start_ns
    end_ns = max(s.wall_last_ns for s in segments) if end_ns is None else end_ns
    total = max(0, round((end_ns - start_ns) * RATE / 1e9))
    audio = np.zeros(total, dtype=np.float32)
    bad: list[BadSpan] = []
    for seg in segments:
        try:
            data = read(seg.key)
            if hashlib.sha256(data).hexdigest() != seg.sha256:
                raise SegmentMismatch("segment bytes do not match the SHA-256 in the manifest")
            pcm = decode(data)
        except SegmentMismatch as exc:
            bad.append(
                BadSpan(
                    max(seg.wall_first_ns, start_ns),
                    min(seg.wall_last_ns, end_ns),
                    seg,
                    f"hash_mismatch: {exc}",
                )
            )
            continue
        except AudioDecodeError as exc:
            bad.append(
                BadSpan(
                    max(seg.wall_first_ns, start_ns),
                    min(seg.wall_last_ns, end_ns),
                    seg,
                    f"decode_error: {exc}",
                )
            )
            continue
        except Exception as exc:  # unreadable (missing object, store down): the span cannot be transcribed now
            bad.append(
                BadSpan(
                    max(seg.wall_first_ns, start_ns),
                    min(seg.wall_last_ns, end_ns),
                    seg,
                    f"unreadable: {type(exc).__name__}: {exc}",
                )
            )
            continue
        offset = round((seg.wall_first_ns - start_ns) * RATE / 1e9)
        if offset < 0:  # the window starts inside this segment (carried context)
            pcm = pcm[-offset:]
            offset = 0
        n = min(len(pcm), total - offset)
        if n > 0:
            audio[offset : offset + n] = pcm[:n]
    return Window(start_ns, audio, bad)
