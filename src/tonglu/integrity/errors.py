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


class RecordDocumentError(IntegrityError):
    """A 笔录 (written record) cannot be imported; the message says why in Chinese and English."""

    status = 422


class RecordTooLarge(RecordDocumentError):
    """The file exceeds the import limit."""

    status = 413


class RecordNotADocument(RecordDocumentError):
    """The bytes are not a DOCX or plain-text document (an image, a PDF, random bytes...)."""

    status = 415


class RecordEmpty(RecordDocumentError):
    """Nothing was given (an empty file or text)."""

    status = 400


class RecordNoQuestions(RecordDocumentError):
    """The document has no 问/答 (question/answer) lines."""

    status = 422


class RecordNotFound(RecordDocumentError):
    """The session has no imported 笔录 yet (or no transcript to compare it with)."""

    status = 404


class InvalidClipRange(IntegrityError):
    """A clip's range cannot be parsed, is empty, or is not covered by the recording."""


class ClipNotSigned(IntegrityError):
    """Part of a clip's range is not yet covered by a signed checkpoint (the session is recording)."""


class RuleFileError(IntegrityError):
    """A risk rule file is malformed; names the file and the line (1-based) of the offending node."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"风险规则文件错误 (risk rule file error) {where}: {message}")


class PlaybackRefused(IntegrityError):
    """A segment that does not match its manifest entry (or cannot be read): never played.
    `reason`: size_mismatch | sha256_mismatch | missing | unreadable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
