"""Helpers of the clip tests: run both verifiers, rewrite a clip zip the way an attacker would."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from tonglu.evidence import canonical, verify_core
from tonglu.evidence.signing import SiteKey

TONGLU = str(Path(sys.executable).with_name("tonglu"))
PYTHON3 = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def both(path: Path, key_pem: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """`tonglu verify --json` and the clip's own verify.py under a bare `python3 -I -S`, both anchored
    on the site key (--key), so the verdict does not depend on how an unanchored result is graded."""
    bundled = path.with_name(path.stem + "-verify.py")
    with zipfile.ZipFile(path) as zf:
        bundled.write_bytes(zf.read("verify.py"))
    a = subprocess.run(
        [TONGLU, "verify", str(path), "--json", "--key", str(key_pem)], capture_output=True, text=True, timeout=120
    )
    b = subprocess.run(
        [PYTHON3, "-I", "-S", str(bundled), str(path), "--json", "--key", str(key_pem)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    ra, rb = json.loads(a.stdout), json.loads(b.stdout)
    ra["_rc"], rb["_rc"] = a.returncode, b.returncode
    return ra, rb


def errors(result: dict[str, Any]) -> set[tuple[str, str]]:
    return {(p["code"], p["object"]) for p in result.get("problems", []) if p["severity"] == "error"}


def rewrite(
    src: Path,
    dst: Path,
    *,
    change: dict[str, bytes] | None = None,
    drop: set[str] | None = None,
    resum: SiteKey | None = None,
) -> Path:
    """Copy a clip zip with files changed/dropped. `resum`: also rewrite SHA256SUMS for the new content
    and sign it with this key (an attacker who holds a site key, or a buggy exporter): then only the
    proof, coverage and signature checks stand between the change and a clean verdict."""
    change, drop = change or {}, drop or set()
    files: dict[str, bytes] = {}
    with zipfile.ZipFile(src) as zin:
        for info in zin.infolist():
            if info.filename not in drop:
                files[info.filename] = change.get(info.filename, zin.read(info.filename))
    if resum is not None:
        body = {n: d for n, d in files.items() if n not in (verify_core.SUMS_NAME, verify_core.SUMS_SIG_NAME)}
        sums = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(body.items())).encode()
        files[verify_core.SUMS_NAME] = sums
        files[verify_core.SUMS_SIG_NAME] = canonical.encode(
            {"key_id": resum.key_id, "signature": base64.b64encode(resum.sign(sums)).decode()}
        )
    with zipfile.ZipFile(dst, "w") as zout:
        for name, data in files.items():
            zout.writestr(name, data)
    return dst


def clip_body(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as zf:
        return canonical.decode(zf.read(verify_core.CLIP_NAME))["body"]  # type: ignore[no-any-return]


def signed_clip(body: dict[str, Any], key: SiteKey) -> bytes:
    return canonical.encode({"body": body, "signature": base64.b64encode(key.sign(canonical.encode(body))).decode()})
