"""Durable file writes: data reaches the disk before a name points at it."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_renamed(path: Path, data: bytes, mode: int, sync: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        write_all(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync:
        fsync_dir(path.parent)


def write_durable(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Write `data` to `path` atomically: temp file, fsync, rename, fsync the directory."""
    _write_renamed(path, data, mode, sync=True)


def write_atomic(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Write `data` to `path` atomically (temp file, rename) without forcing it to disk: readers and
    a restarted process see the old or the new content, never a torn file; a power cut may lose it."""
    _write_renamed(path, data, mode, sync=False)


def append_durable(path: Path, data: bytes) -> None:
    """Append and fsync (O_APPEND: concurrent appenders never interleave within one write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
