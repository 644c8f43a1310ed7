"""Exceptions raised by the web area's own services. Catch `WebError` for all of them.

Routes turn them into precise HTTP answers (see `web/routes/auth.py`); the CLI into exit codes.
"""

from __future__ import annotations


class WebError(Exception):
    """Base class of every error raised by accounts, invitations and the audit trail."""


class AccountError(WebError):
    """A user account operation is invalid (unknown user, bad name, weak password, bad role)."""


class UnknownUser(AccountError):
    """No user with that name exists."""


class UserExists(AccountError):
    """A user with that name already exists."""


class InvitationError(WebError):
    """An invitation is unknown, expired or revoked."""


class AuditError(WebError):
    """The audit trail cannot be written or read."""
