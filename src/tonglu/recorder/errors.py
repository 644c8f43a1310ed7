"""Exceptions raised by the recorder. Catch `RecorderError` for all of them.

Each carries the HTTP status the WHIP and sessions routes answer with, and a precise reason
(Chinese first, English in brackets) that names the cause.
"""

from __future__ import annotations


class RecorderError(Exception):
    """Base class of every recorder error."""

    status = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class SessionNotFound(RecorderError):
    status = 404


class SourceNotFound(RecorderError):
    status = 404


class PeerNotFound(RecorderError):
    status = 404


class SessionStopped(RecorderError):
    """The session was stopped; it takes no more media."""

    status = 409


class SourceBusy(RecorderError):
    """Another peer is publishing this source right now."""

    status = 409


class TokenMissing(RecorderError):
    status = 401


class TokenInvalid(RecorderError):
    status = 403


class OfferError(RecorderError):
    """The SDP offer is unusable."""

    status = 400


class OfferMalformed(OfferError):
    status = 400


class OfferNoMedia(OfferError):
    status = 422


class OfferUnsupportedCodec(OfferError):
    status = 422


class BadRequest(RecorderError):
    status = 400


class ViewerNotFound(RecorderError):
    """No such live (WHEP) viewer, or not the caller's."""

    status = 404


class TooManyViewers(RecorderError):
    """The session already has as many live viewers as the recorder allows."""

    status = 429


class TokenRevoked(RecorderError):
    """The source token was revoked (invitation revoked) or ran out (invitation expired)."""

    status = 403


class NotJoined(RecorderError):
    """A remote participant watches only after joining the session (so the room lists it)."""

    status = 403


class WorkerUnavailable(RecorderError):
    """The recorder worker that owns the session cannot be reached."""

    status = 503


class RegistrationRefused(RecorderError):
    """The web tier refused this recorder host's registration (wrong secret, uncertified key)."""

    status = 403


class ConsultationConflict(RecorderError):
    """A lawyer consultation is already running (start), or none is (end)."""

    status = 409


class TooManyParticipants(RecorderError):
    """The session already has the configured number of remote participants (TONGLU_MAX_PARTICIPANTS)."""

    status = 429


ERRORS: dict[str, type[RecorderError]] = {
    cls.__name__: cls
    for cls in (
        RecorderError,
        SessionNotFound,
        SourceNotFound,
        PeerNotFound,
        SessionStopped,
        SourceBusy,
        TokenMissing,
        TokenInvalid,
        OfferError,
        OfferMalformed,
        OfferNoMedia,
        OfferUnsupportedCodec,
        BadRequest,
        WorkerUnavailable,
        ViewerNotFound,
        TooManyViewers,
        TokenRevoked,
        NotJoined,
        RegistrationRefused,
        ConsultationConflict,
        TooManyParticipants,
    )
}
