"""Files built for one download (export packages): deleted once served, and swept when older than
`TONGLU_EXPORT_TTL_S` (a download that was never completed, a crash between build and send)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)


def exports_dir(data_dir: Path) -> Path:
    return data_dir / "exports"


def remove_file(path: Path) -> None:
    """Delete a served download (a BackgroundTask after the response); its empty folder too."""
    try:
        path.unlink(missing_ok=True)
        path.parent.rmdir()
    except OSError:
        pass  # the folder holds another download still being served


def sweep(root: Path, max_age_s: float, now_s: float | None = None) -> int:
    """Delete files under `root` last modified more than `max_age_s` ago, then empty folders.
    Returns how many files were deleted."""
    if not root.is_dir():
        return 0
    now_s = time.time() if now_s is None else now_s
    removed = 0
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            path = Path(dirpath) / name
            try:
                if now_s - path.stat().st_mtime > max_age_s:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("cannot delete expired download %s: %s", path, exc)
        for name in dirnames:
            try:
                (Path(dirpath) / name).rmdir()
            except OSError:
                pass  # not empty
    return removed
