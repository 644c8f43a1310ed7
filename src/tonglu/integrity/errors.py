"""Exceptions of the integrity package. Catch `IntegrityError` for all of them."""

from __future__ import annotations


class IntegrityError(Exception):
    """Base class of every error raised by the integrity review."""


class UnknownSession(IntegrityError):
    """No manifest exists for the session id."""


class SessionStillRecording(IntegrityError):
    """The operation needs a stopped session (e.g. the court export)."""


class UnknownFinding(IntegrityError):
    """An explanation names a finding id that the analysis does not produce."""


class InvalidExplanation(IntegrityError):
    """An explanation lacks a valid reason code, text or approver."""


class MediaMissing(IntegrityError):
    """A master segment needed to build a derivative cannot be read."""


class ToolError(IntegrityError):
    """An external tool (ffmpeg, chromium) failed or is missing."""


class InvalidClipRange(IntegrityError):
    """A clip's range cannot be parsed, is empty, or is not covered by the recording."""


class ClipNotSigned(IntegrityError):
    """Part of a clip's range is not yet covered by a signed checkpoint (the session is recording)."""
