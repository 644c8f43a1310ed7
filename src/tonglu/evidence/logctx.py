"""Log lines that always carry room, session, track and segment ids.

    log = context_logger(__name__, room="r1", session=sid)
    log.info("sealed", extra=ids(track="main/video", segment=12))

Missing ids print as "-" so every line has the same shape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

ID_FIELDS = ("room", "session", "track", "segment")
FORMAT = (
    "%(asctime)s %(levelname)s %(name)s "
    "room=%(room)s session=%(session)s track=%(track)s segment=%(segment)s %(message)s"
)


class _Defaults(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name in ID_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, "-")
        return True


class ContextLogger(logging.LoggerAdapter):  # type: ignore[type-arg,unused-ignore]
    """A logger adapter that merges fixed ids with the ids given per call."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        base = dict(self.extra or {})
        base.update(kwargs.get("extra") or {})
        kwargs["extra"] = base
        return msg, kwargs

    def bind(self, **ids: Any) -> ContextLogger:
        merged = dict(self.extra or {})
        merged.update({k: v for k, v in ids.items() if v is not None})
        return ContextLogger(self.logger, merged)


def context_logger(name: str, **ids: Any) -> ContextLogger:
    return ContextLogger(logging.getLogger(name), {k: v for k, v in ids.items() if v is not None})


def ids(**values: Any) -> Mapping[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def configure_logging(level: str = "INFO") -> None:
    """Install the id-carrying format on the root logger (idempotent)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in root.handlers:
        if getattr(handler, "_tonglu", False):
            return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_Defaults())
    handler._tonglu = True  # type: ignore[attr-defined]
    root.addHandler(handler)
