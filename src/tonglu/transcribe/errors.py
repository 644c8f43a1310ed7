"""Exceptions of the transcription service. Catch `TranscribeError` for all of them."""

from __future__ import annotations


class TranscribeError(Exception):
    """Base class of every error raised by `transcribe`."""


class ModelError(TranscribeError):
    """The Whisper model is missing, incomplete or not the expected bytes."""


class ModelChecksumError(ModelError):
    """A reassembled model file does not have the expected size or SHA-256."""


class AudioDecodeError(TranscribeError):
    """An audio segment cannot be read or decoded (corrupt container, no audio stream, ...)."""


class SegmentMismatch(AudioDecodeError):
    """A segment's bytes do not match the SHA-256 recorded in the manifest."""


class QueueError(TranscribeError):
    """The durable job queue cannot be opened or is inconsistent."""


class LeaseLost(QueueError):
    """A worker tried to commit a job whose lease had passed to another worker."""


class VersionNotFound(TranscribeError):
    """The session has no transcript (version) with that number."""


class CorrectionError(TranscribeError, ValueError):
    """A correction request is malformed (bad times, empty lines, unknown base version)."""
