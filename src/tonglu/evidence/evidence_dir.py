"""Lay out a session's evidence on disk exactly as the verifier reads it (= the bucket's key layout).

    write_session_dir(entries, checkpoints, {key: path}, public_key_pem, dest)

and the package helpers the export uses so that every file in a package is covered:

    install_verifier(dest)            # verify.py (evidence/verify_core.py, standard library only)
    write_sha256sums(dest)            # SHA256SUMS: "<sha256>  <relative path>" for every other file
    sign_sha256sums(dest, site_key)   # SHA256SUMS.sig: canonical {"key_id", "signature": base64}
    zip_dir(dest, zip_path)           # deterministic zip (sorted names, fixed times, stored)

Package format (what `verify_core` checks): the evidence objects under their keys
(`sessions/...`, `site/keys/...`), any other files anywhere else (report, work copy, transcript,
README, verify.py), `SHA256SUMS` listing every file except itself and `SHA256SUMS.sig`, in the
format of coreutils `sha256sum` (so `sha256sum -c SHA256SUMS` works too), and optionally
`SHA256SUMS.sig`, the site key's Ed25519 signature over the exact bytes of `SHA256SUMS`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from tonglu.evidence import canonical, keys
from tonglu.evidence.checkpoint import Checkpoint
from tonglu.evidence.errors import PackageError
from tonglu.evidence.fsutil import write_durable
from tonglu.evidence.manifest import ManifestEntry
from tonglu.evidence.signing import SiteKey, key_id_of, load_public_pem
from tonglu.evidence.spool import Spool

SUMS_NAME = "SHA256SUMS"
SUMS_SIG_NAME = "SHA256SUMS.sig"
VERIFIER_NAME = "verify.py"
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def _target(dest: Path, key: str) -> Path:
    parts = key.split("/")
    if key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise PackageError(f"object key {key!r} cannot be used as a relative path")
    return dest.joinpath(*parts)


def _write(dest: Path, key: str, data: bytes) -> None:
    write_durable(_target(dest, key), data, mode=0o644)


def write_session_dir(
    entries: Sequence[ManifestEntry],
    checkpoints: Sequence[Checkpoint],
    segment_paths: Mapping[str, Path],
    public_key_pem: bytes,
    dest: Path,
    *,
    objects: Mapping[str, bytes] | None = None,
) -> Path:
    """Write one session's manifest, checkpoints (by ordinal), segments and the public key to `dest`.

    `segment_paths` maps object keys (the `key` of segment/transcript entries) to local files;
    `objects` adds other evidence objects given as bytes (e.g. a transcript JSON)."""
    if not entries:
        raise PackageError("a session without manifest entries cannot be laid out")
    sid = entries[0].session
    dest.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        if entry.session != sid:
            raise PackageError(f"entry {entry.seq} belongs to session {entry.session}, not {sid}")
        _write(dest, keys.manifest_key(sid, entry.seq), entry.to_bytes())
    for ordinal, cp in enumerate(checkpoints):
        _write(dest, keys.checkpoint_key(sid, ordinal), cp.to_bytes())
    for key, path in segment_paths.items():
        target = _target(dest, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    for key, data in (objects or {}).items():
        _write(dest, key, data)
    key_id = key_id_of(load_public_pem(public_key_pem))
    _write(dest, keys.public_key_key(key_id), public_key_pem)
    return dest


def spooled_objects(spool: Spool, session: str) -> dict[str, Path]:
    """{key: data file} of the session's non-manifest objects still waiting in the spool."""
    prefix = keys.session_prefix(session)
    return {
        item.key: item.data_path
        for item in spool.pending()
        if item.key.startswith(prefix) and "/manifest/" not in item.key and "/checkpoints/" not in item.key
    }


def _files(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            out.append(Path(dirpath, fn).relative_to(root).as_posix())
    return sorted(out)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def install_verifier(dest: Path) -> Path:
    """Copy the standalone verifier into the package as `verify.py`."""
    from tonglu.evidence import verify_core

    target = dest / VERIFIER_NAME
    shutil.copyfile(verify_core.__file__, target)
    return target


def write_sha256sums(root: Path) -> Path:
    """`SHA256SUMS` over every file below `root` except SHA256SUMS and SHA256SUMS.sig."""
    lines = []
    for rel in _files(root):
        if rel in (SUMS_NAME, SUMS_SIG_NAME):
            continue
        if "\n" in rel or "\\" in rel:
            raise PackageError(f"file name {rel!r} cannot be listed in SHA256SUMS")
        lines.append(f"{_sha256(root / rel)}  {rel}\n")
    path = root / SUMS_NAME
    write_durable(path, "".join(lines).encode("utf-8"), mode=0o644)
    return path


def sign_sha256sums(root: Path, key: SiteKey) -> Path:
    data = (root / SUMS_NAME).read_bytes()
    doc = {"key_id": key.key_id, "signature": base64.b64encode(key.sign(data)).decode()}
    path = root / SUMS_SIG_NAME
    write_durable(path, canonical.encode(doc), mode=0o644)
    return path


def zip_dir(
    root: Path, zip_path: Path, *, top: str | None = None, names: Iterable[str] | None = None
) -> Path:
    """Zip `root` deterministically (stored: media does not compress). `top` puts it in a folder."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as zf:
        for rel in sorted(names) if names is not None else _files(root):
            info = zipfile.ZipInfo(f"{top}/{rel}" if top else rel, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            with open(root / rel, "rb") as src, zf.open(info, "w") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    return zip_path
