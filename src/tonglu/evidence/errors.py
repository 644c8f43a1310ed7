"""Exceptions raised by the evidence store. Catch `StorageError` for all of them."""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error the evidence store raises."""


class ConfigError(StorageError):
    """Configuration is missing or unusable (bad endpoint, missing key file, ...)."""


class KeyFileError(ConfigError):
    """The site signing key is missing, unreadable or malformed."""


class CanonicalError(StorageError):
    """Data cannot be put into, or did not come in, canonical form."""


class ManifestError(StorageError):
    """A manifest entry or checkpoint is malformed."""


class SpoolError(StorageError):
    """The local spool cannot be written or read."""


class SpoolCorrupt(SpoolError):
    """A spooled file does not match its recorded size or hash; it is quarantined, never deleted."""


class StoreError(StorageError):
    """The object store refused or failed a request."""


class StoreUnavailable(StoreError):
    """The object store cannot be reached (connection refused, timeout, 5xx)."""


class StoreAuthError(StoreError):
    """The object store rejected the credentials (wrong key, anonymous, no rights)."""


class ObjectConflict(StoreError):
    """An object with the same key but different content already exists in the WORM bucket."""


class PackageError(StorageError):
    """An export package or evidence directory is unreadable or lacks required parts."""


class ObjectNotFound(StoreError):
    """The object (or the version asked for) is not in the store."""


class IndexDBError(StorageError):
    """The index DB cannot be opened or updated (it is a cache: `tonglu reindex` rebuilds it)."""


class HoldError(StorageError):
    """A legal hold or retention change cannot be made (unknown session, hold or request, bad state)."""


class HoldNotFound(HoldError):
    """No such session, active hold or pending lift request."""


class TwoPersonRule(HoldError):
    """A lift must be approved by a person other than the one who requested it."""


class RetentionShortening(HoldError):
    """COMPLIANCE retention can only be extended: a change that would shorten it is refused."""


class UnknownCategory(HoldError):
    """A case category the retention policy does not know."""


class DatabaseUnavailable(IndexDBError):
    """`TONGLU_DATABASE_URL` names a database that cannot be used: unsupported scheme, server not
    reachable, database missing, credentials refused. Its message is one line (中文 + English)."""
