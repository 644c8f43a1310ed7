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


class RuleFileError(IntegrityError):
    """A risk rule file is malformed; names the file and the line (1-based) of the offending node."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"风险规则文件错误 (risk rule file error) {where}: {message}")
