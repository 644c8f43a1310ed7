#!/usr/bin/env python3
"""Tonglu (同录) offline evidence verifier — standard library only, one file.

This exact file is shipped inside every export package as ``verify.py``:

    python3 verify.py PACKAGE.zip            # or an unpacked package / evidence directory
    python3 verify.py PACKAGE.zip --json     # machine-readable result
    python3 verify.py PACKAGE.zip --key site.pem --digest ABCDE-12345-...   # external trust anchors

Exit status: 0 intact AND anchored (warnings allowed), 1 anything wrong (or the package cannot be
read), 2 usage error (no such path, bad option), 3 consistent but NOT anchored.

Anchoring. A package checks itself: its checkpoints are signed with the key shipped inside it. A
forger who rebuilds the whole chain and signs it with a new key of their own produces a package
that is just as consistent. Only an anchor from outside the package tells the two apart: the final
digest written on the paper record (``--digest``) or the site's public key obtained from the site
itself (``--key``; compare its fingerprint with the one the site publishes). Without one the verdict
is "CONSISTENT, NOT ANCHORED" (一致但未锚定, exit 3), never "INTACT". When a person runs it at a
terminal (stdin is a TTY) without --key/--digest, it asks for the digest from the paper record;
scripts and CI (no TTY) are never asked.

It needs nothing but Python 3.9+. Ed25519 signatures are checked with the ``cryptography`` package
when it is installed and otherwise with the small pure-Python RFC 8032 verifier below, so signatures
are always checked.

What it checks (layout: the object keys of the evidence bucket used as relative paths):

    sessions/{sid}/manifest/{seq:08d}.json        canonical manifest entries, hash-chained by `prev`
    sessions/{sid}/segments/{source}/{track}/...  media, named by the `key` of each `segment` entry
    sessions/{sid}/checkpoints/{n:08d}.json       {"body": {...}, "signature": base64 Ed25519}
    sessions/{sid}/transcripts/...                objects named by `transcript` entries
    sessions/{sid}/records/...                    笔录 files named by `record_document` entries
    site/keys/{key_id}.pem                        the site's Ed25519 public key(s)
    site/hosts/{key_id}.json                      a recorder host's key, certified by the site key
    SHA256SUMS [+ SHA256SUMS.sig]                 package files (report, work copy, README, verify.py)

- every manifest entry is in canonical form (an edited entry that still parses is caught), numbered
  0..n-1 under its own name, and linked to its predecessor; the authentic chain is walked back from
  the newest validly signed checkpoint, so missing, inserted, edited and renumbered entries are named;
- every checkpoint: its Ed25519 signature, key id, the Merkle root (RFC 9162) and head over the
  entries it covers, the checkpoint chain (`prev_checkpoint`), ordinals without holes; entries after
  the last signed checkpoint are an "unsigned tail" (a warning while the session is still running,
  an error once it has a `session_stop` entry);
- every object an entry names (segments, transcripts, records) is re-hashed (streaming) and size-checked:
  missing, truncated, altered, swapped (reordered) and extra (unreferenced) objects are named;
  segments of each track have consecutive indexes and increasing wall-clock times;
- the public key file matches its key id (and the trusted key given with --key, if any);
- a checkpoint signed by a recorder host's own key counts only with that host's certificate
  (``site/hosts/{key_id}.json``: host id, public key, validity, signed by the site key, which must be
  the trusted key when --key is given) covering the checkpoint's time; an uncertified key, a
  certificate signed by another key, or one that has expired is named;
- SHA256SUMS (the format of ``sha256sum``: "<hex>  <path>") lists every other file of the package;
  an altered, missing or unlisted file is named; SHA256SUMS.sig, when present, is its signature.

Problem codes are stable strings (see ``CODES``); each problem names the object (path/key) and
carries an English and a Chinese message.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import io
import json
import os
import re
import stat
import sys
import threading
import zipfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import IO, Any

VERIFIER_VERSION = 1
GENESIS = "0" * 64
ENTRY_VERSION = 1
CHECKPOINT_VERSION = 1
ENTRY_FIELDS = frozenset({"v", "session", "seq", "kind", "time_ns", "prev", "body"})
HOST_CERT_VERSION = 1
HOST_CERT_FIELDS = frozenset({"v", "host", "key_id", "public_key", "not_before_ns", "not_after_ns", "issuer"})
CHECKPOINT_FIELDS = frozenset(
    {"v", "session", "tree_size", "root", "head", "time_ns", "key_id", "prev_checkpoint", "final"}
)
# The evidence model's constants are written here once: manifest, checkpoint, index and the rest
# import them from this stdlib-only module, which also travels alone in every export package.
MEDIA_KINDS = frozenset({"segment", "gap"})
ANNOTATION_KINDS = frozenset(
    {
        "session_start",
        "session_stop",
        "marker",
        "break",
        "explanation",
        "record_times",
        "custody",
        "note",
        "transcript",
        "participant",
        "legal_hold",  # a legal hold placed (exclusion motion, appeal, complaint): objects held in the store
        "legal_hold_lift",  # a request to lift a hold, or its approval by a second person
        "retention",  # the session's case category (and so its retention) set or changed
        "record_document",  # an imported 笔录 (signed written record): its file is an object, re-hashed
        "alert",  # a risk rule fired (integrity.risk): rule, severity, legal source, condition
        "alert_ack",  # a person acknowledged an alert: who, role, when
        "consultation",  # a lawyer consultation (CPL art. 39) started/ended: parties, who, recording
    }
)
KINDS = MEDIA_KINDS | ANNOTATION_KINDS
GAP_REASONS = frozenset(
    {
        "rtp_loss",  # sequence hole NACK did not repair
        "timestamp_jump",
        "no_packets",  # silence on the wire longer than the threshold
        "peer_disconnect",
        "ice_failure",
        "dtls_failure",
        "recorder_restart",
        "not_connected",  # an expected source that has not (yet) published
        "upload_missing",
        "hash_mismatch",
        "clock_step",
        "recorder_overload",  # frames received but dropped by the recorder (queue full)
        "lawyer_consultation",  # not recorded by law (CPL art. 39): bounded by `consultation` entries
    }
)
SUMS_NAME = "SHA256SUMS"
SUMS_SIG_NAME = "SHA256SUMS.sig"
CHUNK = 1 << 20  # 1 MiB reads: large enough that hashing runs at OpenSSL speed

ERROR = "error"
WARNING = "warning"
EXIT_INTACT, EXIT_BAD, EXIT_USAGE, EXIT_UNANCHORED = 0, 1, 2, 3
VERDICT_INTACT = "intact"
VERDICT_UNANCHORED = "consistent_not_anchored"

# code -> (English title, Chinese title)
CODES: dict[str, tuple[str, str]] = {
    "package_unreadable": ("package cannot be read", "证据包无法读取"),
    "package_empty": ("no session found", "未找到任何录制会话"),
    "package_file_altered": ("package file altered", "证据包文件被修改"),
    "package_file_missing": ("package file missing", "证据包文件缺失"),
    "package_file_extra": ("file not listed in SHA256SUMS", "文件未列入 SHA256SUMS"),
    "package_file_unverified": ("package file not covered by SHA256SUMS", "证据包文件无校验值"),
    "package_sums_malformed": ("SHA256SUMS malformed", "SHA256SUMS 格式错误"),
    "package_signature_invalid": ("SHA256SUMS signature invalid", "SHA256SUMS 签名无效"),
    "public_key_missing": ("public key missing", "公钥缺失"),
    "public_key_malformed": ("public key malformed", "公钥格式错误"),
    "public_key_mismatch": ("public key does not match its key id", "公钥与其标识不符"),
    "public_key_untrusted": ("signed with an untrusted key", "签名密钥不受信任"),
    "host_certificate_invalid": ("host key certificate invalid", "主机密钥证书无效"),
    "session_empty": ("session has no manifest", "会话没有清单"),
    "entry_edited": ("manifest entry edited", "清单条目被修改"),
    "entry_missing": ("manifest entry missing", "清单条目缺失"),
    "entry_inserted": ("manifest entry inserted", "清单条目被插入"),
    "entry_misplaced": ("manifest entry renumbered or moved", "清单条目被重新编号或移动"),
    "chain_broken": ("hash chain broken", "哈希链断裂"),
    "unsigned_tail": ("entries not covered by a signed checkpoint", "条目未被签名检查点覆盖"),
    "checkpoint_malformed": ("checkpoint malformed", "检查点格式错误"),
    "checkpoint_signature_invalid": ("checkpoint signature invalid", "检查点签名无效"),
    "checkpoint_root_mismatch": ("checkpoint Merkle root mismatch", "检查点默克尔根不符"),
    "checkpoint_head_mismatch": ("checkpoint head mismatch", "检查点链头不符"),
    "checkpoint_chain_broken": ("checkpoint chain broken", "检查点链断裂"),
    "checkpoint_missing": ("checkpoint missing", "检查点缺失"),
    "checkpoint_final_missing": (
        "no final checkpoint (session still recording?)",
        "无最终检查点（仍在录制？）",
    ),
    "checkpoint_digest_not_found": ("expected digest not found", "未找到预期的摘要"),
    "segment_altered": ("segment altered", "录像片段被修改"),
    "segment_missing": ("segment missing", "录像片段缺失"),
    "segment_truncated": ("segment truncated", "录像片段被截断"),
    "segment_extra": ("segment not in the manifest", "录像片段不在清单中"),
    "segment_reordered": ("segment reordered", "录像片段顺序被调换"),
    "segment_duplicate": ("segment referenced twice", "录像片段被重复引用"),
    "segment_index_gap": ("segment index gap", "录像片段编号不连续"),
    "segment_time_order": ("segment times out of order", "录像片段时间顺序错误"),
    "object_altered": ("object altered", "对象被修改"),
    "object_missing": ("object missing", "对象缺失"),
    "object_extra": ("object not in the manifest", "对象不在清单中"),
    # store only, warnings: the original (first) version is what was verified
    "shadow_version": ("shadow version: newer version over a sealed object", "影子版本：封存对象上的新版本"),
    "delete_marker": ("delete marker on a sealed object", "删除标记：封存对象被标记删除"),
}

_KEY_STATUS = {
    "missing": ("missing", "缺失"),
    "malformed": ("malformed", "格式错误"),
    "mismatch": ("replaced (the file does not match its key id)", "被替换（与标识不符）"),
    "untrusted": ("not a trusted key", "不受信任"),
    "cert_invalid": (
        "a recorder host key without a valid certificate from the site key",
        "录像主机密钥，但没有站点密钥签发的有效证书",
    ),
    "cert_expired": (
        "a recorder host key used outside its certificate's validity",
        "录像主机密钥在证书有效期之外使用",
    ),
}
_MANIFEST_DAMAGE = frozenset(
    {"entry_edited", "entry_missing", "entry_inserted", "entry_misplaced", "chain_broken"}
)
_SID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SEQ_NAME = re.compile(r"^(\d{8})\.json$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_KEY_NAME = re.compile(r"^site/keys/[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.pem$")
_HOST_CERT_NAME = re.compile(r"^site/hosts/[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.json$")
_SUMS_LINE = re.compile(r"^([0-9a-f]{64})  ([^\r\n]+)$")


class VerifyError(Exception):
    """The thing to verify cannot be read at all (not a problem found inside it)."""


class UsageError(VerifyError):
    """The verifier was called wrongly (e.g. the path does not exist)."""


# ------------------------------------------------------------------------------------------------
# Canonical JSON (byte-compatible with storage/canonical.py)
# ------------------------------------------------------------------------------------------------


class NotCanonical(ValueError):
    pass


def _no_float(text: str) -> Any:
    raise NotCanonical(f"float {text} not allowed")


def _no_constant(text: str) -> Any:
    raise NotCanonical(f"{text} not allowed")


def _check_ints(value: Any) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if abs(value) >= 2**63:
            raise NotCanonical("integer out of 64-bit range")
    elif isinstance(value, list):
        for item in value:
            _check_ints(item)
    elif isinstance(value, dict):
        for item in value.values():
            _check_ints(item)


def canonical_encode(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def canonical_decode(data: bytes) -> Any:
    """Parse canonical bytes; raise NotCanonical when they are not exactly in canonical form."""
    try:
        value = json.loads(data.decode("utf-8"), parse_float=_no_float, parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotCanonical(f"not valid UTF-8 JSON: {exc}") from exc
    _check_ints(value)
    if canonical_encode(value) != data:
        raise NotCanonical("bytes are not in canonical form (edited or re-serialised)")
    return value


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------
# RFC 9162 Merkle tree hash (byte-compatible with storage/merkle.py)
# ------------------------------------------------------------------------------------------------


def merkle_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def merkle_root(entries: Iterable[bytes]) -> bytes:
    stack: list[tuple[int, bytes]] = []
    for entry in entries:
        size, h = 1, merkle_leaf(entry)
        while stack and stack[-1][0] == size:
            left_size, left = stack.pop()
            size, h = left_size + size, hashlib.sha256(b"\x01" + left + h).digest()
        stack.append((size, h))
    if not stack:
        return hashlib.sha256(b"").digest()
    _, root = stack.pop()
    while stack:
        _, left = stack.pop()
        root = hashlib.sha256(b"\x01" + left + root).digest()
    return root


def merkle_roots_at(entries: list[bytes], sizes: Iterable[int]) -> dict[int, bytes]:
    """The roots of the first n entries for every n in `sizes`, in one pass (O(log n) per size)."""
    wanted = set(sizes)
    out: dict[int, bytes] = {}
    stack: list[tuple[int, bytes]] = []
    if 0 in wanted:
        out[0] = hashlib.sha256(b"").digest()
    for n, entry in enumerate(entries, 1):
        size, h = 1, merkle_leaf(entry)
        while stack and stack[-1][0] == size:
            left_size, left = stack.pop()
            size, h = left_size + size, hashlib.sha256(b"\x01" + left + h).digest()
        stack.append((size, h))
        if n in wanted:
            root = stack[-1][1]
            for _, left in reversed(stack[:-1]):
                root = hashlib.sha256(b"\x01" + left + root).digest()
            out[n] = root
    return out


def human_digest(body_bytes: bytes) -> str:
    """Same as storage.checkpoint.human_digest: 80 bits of SHA-256 in 4 groups of 5 hex digits."""
    h = hashlib.sha256(body_bytes).hexdigest().upper()[:20]
    return "-".join(h[i : i + 5] for i in range(0, 20, 5))


# ------------------------------------------------------------------------------------------------
# Ed25519 (RFC 8032 §5.1.7 verification) — `cryptography` when present, else pure Python
# ------------------------------------------------------------------------------------------------

_P = 2**255 - 19
_Q = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def _pt_add(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % _P
    bb = (y1 + x1) * (y2 + x2) % _P
    cc = 2 * t1 * t2 * _D % _P
    dd = 2 * z1 * z2 % _P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _pt_mul(s: int, p: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = _pt_add(q, p)
        p = _pt_add(p, p)
        s >>= 1
    return q


def _pt_equal(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return (a[0] * b[2] - b[0] * a[2]) % _P == 0 and (a[1] * b[2] - b[1] * a[2]) % _P == 0


def _recover_x(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


def _decompress(data: bytes) -> tuple[int, int, int, int] | None:
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % _P)


_GY = 4 * pow(5, _P - 2, _P) % _P
_G = (_recover_x(_GY, 0) or 0, _GY, 1, (_recover_x(_GY, 0) or 0) * _GY % _P)


def ed25519_verify_pure(public: bytes, signature: bytes, message: bytes) -> bool:
    """RFC 8032 Ed25519 verification (cofactorless, S < L), pure Python."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a = _decompress(public)
    r = _decompress(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _Q:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % _Q
    return _pt_equal(_pt_mul(s, _G), _pt_add(r, _pt_mul(h, a)))


try:  # pragma: no branch - depends on the machine
    from cryptography.exceptions import InvalidSignature as _InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey as _Ed25519PublicKey

    SIGNATURE_ENGINE = "cryptography"
except Exception:  # any import failure means: use the built-in verifier
    _Ed25519PublicKey = None  # type: ignore[assignment,misc]
    SIGNATURE_ENGINE = "builtin-ed25519"


def ed25519_verify(public: bytes, signature: bytes, message: bytes) -> bool:
    if _Ed25519PublicKey is None:
        return ed25519_verify_pure(public, signature, message)
    try:
        _Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except _InvalidSignature:
        return False
    except ValueError:
        return False
    return True


def public_key_pem(raw: bytes) -> bytes:
    """The canonical PEM of a raw Ed25519 public key (as `cryptography` writes it)."""
    b64 = base64.b64encode(_SPKI_PREFIX + raw).decode()
    body = "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n".encode()


def raw_public_key_from_pem(pem: bytes, *, strict: bool = False) -> bytes:
    """The 32 raw bytes of an Ed25519 SubjectPublicKeyInfo PEM; ValueError otherwise.

    `strict`: the bytes must be exactly the canonical PEM (a key file inside a package is)."""
    text = pem.decode("ascii", errors="strict") if isinstance(pem, bytes) else pem
    lines = [ln.strip() for ln in text.strip().splitlines()]
    if len(lines) < 3 or lines[0] != "-----BEGIN PUBLIC KEY-----" or lines[-1] != "-----END PUBLIC KEY-----":
        raise ValueError("not a PEM 'PUBLIC KEY' block")
    try:
        der = base64.b64decode("".join(lines[1:-1]), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"bad base64: {exc}") from exc
    if len(der) != 44 or not der.startswith(_SPKI_PREFIX):
        raise ValueError("not an Ed25519 public key")
    if strict and pem != public_key_pem(der[12:]):
        raise ValueError("not in canonical PEM form (the file was edited)")
    return der[12:]


def key_id_of_raw(raw: bytes) -> str:
    """Same as storage.signing.key_id_of: first 16 hex digits of SHA-256 of the raw key."""
    return hashlib.sha256(raw).hexdigest()[:16]


def key_fingerprint(raw: bytes) -> str:
    """The fingerprint a site publishes for its key: all of SHA-256 of the raw key, 16 groups of 4.

    (The 16-digit key id names a key; it is too short to be the thing a person compares.)"""
    h = hashlib.sha256(raw).hexdigest().upper()
    return " ".join(h[i : i + 4] for i in range(0, 64, 4))


def host_cert_name(key_id: str) -> str:
    return f"site/hosts/{key_id}.json"


def parse_host_cert(raw: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    """(body, host public key raw, signature) of a host certificate; ValueError when malformed.

    ``{"body": {"v", "host", "key_id", "public_key" (base64 raw Ed25519), "not_before_ns",
    "not_after_ns", "issuer" (site key id)}, "signature": base64 Ed25519 by the issuer}`` in
    canonical JSON; the signature covers the canonical bytes of the body."""
    try:
        doc = canonical_decode(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not canonical JSON: {exc}") from exc
    if not isinstance(doc, dict) or set(doc) != {"body", "signature"}:
        raise ValueError("must have exactly 'body' and 'signature'")
    body = doc["body"]
    if not isinstance(body, dict) or set(body) != HOST_CERT_FIELDS:
        raise ValueError(f"body fields must be {sorted(HOST_CERT_FIELDS)}")
    if body["v"] != HOST_CERT_VERSION:
        raise ValueError(f"unsupported certificate version {body['v']!r}")
    if not all(isinstance(body[k], str) for k in ("host", "key_id", "public_key", "issuer")):
        raise ValueError("host, key_id, public_key, issuer must be strings")
    if not all(isinstance(body[k], int) and not isinstance(body[k], bool) for k in ("not_before_ns", "not_after_ns")):
        raise ValueError("not_before_ns, not_after_ns must be integers")
    public = _strict_b64(body["public_key"])
    if public is None or len(public) != 32:
        raise ValueError("public_key is not a base64 raw Ed25519 key")
    signature = _strict_b64(doc["signature"])
    if signature is None or len(signature) != 64:
        raise ValueError("signature is not a base64 Ed25519 signature")
    if key_id_of_raw(public) != body["key_id"]:
        raise ValueError(f"key_id {body['key_id']} is not the id of its public key ({key_id_of_raw(public)})")
    return body, public, signature


# ------------------------------------------------------------------------------------------------
# Sources: a directory, a zip, or (in storage/verify.py) the object store
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Digest:
    sha256: str
    size: int
    error: str | None = None  # the object could not be read to the end (its bytes are suspect)


class Source:
    """What the verifier reads. Names are '/'-separated relative paths (= object keys)."""

    label = "source"
    kind = "source"
    hash_workers = 1  # threads hashing large objects
    parallel_reads = False  # read small objects in parallel too (worth it where each read waits on a network)

    def names(self) -> list[str]:
        raise NotImplementedError

    def open(self, name: str) -> IO[bytes]:
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        with self.open(name) as fh:
            return fh.read()

    def digest(self, name: str) -> Digest:
        h = hashlib.sha256()
        size = 0
        try:
            with self.open(name) as fh:
                while block := fh.read(CHUNK):
                    h.update(block)
                    size += len(block)
        except (OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
            return Digest(h.hexdigest(), size, f"{type(exc).__name__}: {exc}")
        return Digest(h.hexdigest(), size)

    def problems(self, names: list[str]) -> list[Problem]:
        """Problems only this kind of source can see (e.g. overwritten object versions)."""
        return []

    def close(self) -> None:
        pass


class DirSource(Source):
    kind = "directory"

    def __init__(self, root: str) -> None:
        self.root = root
        self.label = root
        self.hash_workers = max(1, min(4, os.cpu_count() or 1))

    def _path(self, name: str) -> str:
        return os.path.join(self.root, *name.split("/"))

    def names(self) -> list[str]:
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            rel = os.path.relpath(dirpath, self.root)
            for fn in sorted(filenames):
                path = os.path.join(dirpath, fn)
                try:
                    if not stat.S_ISREG(os.lstat(path).st_mode):
                        continue
                except OSError:
                    continue
                out.append(fn if rel == "." else "/".join([*rel.split(os.sep), fn]))
        return out

    def open(self, name: str) -> IO[bytes]:
        return open(self._path(name), "rb")

    def digest(self, name: str) -> Digest:
        h = hashlib.sha256()
        size = 0
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        try:
            fd = os.open(self._path(name), os.O_RDONLY)
        except OSError as exc:
            return Digest(h.hexdigest(), 0, f"{type(exc).__name__}: {exc}")
        try:
            with os.fdopen(fd, "rb", buffering=0) as fh:
                while n := fh.readinto(buf):
                    h.update(view[:n])
                    size += n
        except OSError as exc:
            return Digest(h.hexdigest(), size, f"{type(exc).__name__}: {exc}")
        return Digest(h.hexdigest(), size)


class ZipSource(Source):
    kind = "zip"

    def __init__(self, path: str) -> None:
        self.path = path
        self.label = path
        self._local = threading.local()
        self._all: list[zipfile.ZipFile] = []
        self._lock = threading.Lock()
        zf = self._zip()
        self._infos = {i.filename: i for i in zf.infolist() if not i.is_dir()}
        self.hash_workers = max(1, min(4, os.cpu_count() or 1))

    def _zip(self) -> zipfile.ZipFile:
        zf = getattr(self._local, "zf", None)
        if zf is None:
            try:
                zf = zipfile.ZipFile(self.path)
            except (OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
                raise VerifyError(f"{self.path}: not a readable zip file ({exc})") from exc
            self._local.zf = zf
            with self._lock:
                self._all.append(zf)
        return zf

    def names(self) -> list[str]:
        return sorted(self._infos)

    def open(self, name: str) -> IO[bytes]:
        return self._zip().open(self._infos[name])

    def problems(self, names: list[str]) -> list[Problem]:
        seen: set[str] = set()
        out = []
        for info in self._zip().infolist():
            if info.filename in seen:
                out.append(
                    _p(
                        "package_file_extra",
                        info.filename,
                        "the zip holds this name more than once",
                        "压缩包中此文件名出现多次",
                    )
                )
            seen.add(info.filename)
        return out

    def close(self) -> None:
        with self._lock:
            for zf in self._all:
                zf.close()
            self._all.clear()


class PrefixSource(Source):
    """A view of another source below a folder (a package zipped with its top folder)."""

    def __init__(self, inner: Source, prefix: str) -> None:
        self.inner = inner
        self.prefix = prefix
        self.kind = inner.kind
        self.label = f"{inner.label}:{prefix}"
        self.hash_workers = inner.hash_workers

    def names(self) -> list[str]:
        n = len(self.prefix)
        return [name[n:] for name in self.inner.names() if name.startswith(self.prefix)]

    def open(self, name: str) -> IO[bytes]:
        return self.inner.open(self.prefix + name)

    def digest(self, name: str) -> Digest:
        return self.inner.digest(self.prefix + name)

    def problems(self, names: list[str]) -> list[Problem]:
        return self.inner.problems([self.prefix + n for n in names])

    def close(self) -> None:
        self.inner.close()


def _looks_like_package(names: list[str]) -> bool:
    return any(n.startswith("sessions/") or n == SUMS_NAME for n in names)


def open_source(path: str) -> Source:
    """A directory or zip; descends into a single top folder that holds the package."""
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file or directory")
    source: Source
    if os.path.isdir(path):
        source = DirSource(path)
    else:
        try:
            is_zip = zipfile.is_zipfile(path)
        except OSError as exc:
            raise VerifyError(f"{path}: cannot be read ({exc})") from exc
        if not is_zip:
            raise VerifyError(f"{path}: neither a directory nor a zip file (corrupt or wrong file?)")
        source = ZipSource(path)
    names = source.names()
    if not _looks_like_package(names):
        tops = {n.split("/", 1)[0] for n in names if "/" in n}
        loose = [n for n in names if "/" not in n]
        if len(tops) == 1 and not loose:
            prefix = tops.pop() + "/"
            sub = PrefixSource(source, prefix)
            if _looks_like_package(sub.names()):
                return sub
    return source


# ------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------


@dataclass
class Problem:
    code: str
    object: str
    message: str
    message_zh: str = ""
    severity: str = ERROR
    session: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckpointSummary:
    ordinal: int
    object: str
    tree_size: int
    final: bool
    time_ns: int
    key_id: str
    digest: str
    signature: str  # "valid" | "invalid" | "untrusted" | "malformed"


@dataclass
class SessionSummary:
    session: str
    entries: int = 0
    signed_entries: int = 0
    segments: int = 0
    bytes: int = 0
    tracks: dict[str, int] = field(default_factory=dict)
    stopped: bool = False
    final: bool = False
    checkpoints: list[CheckpointSummary] = field(default_factory=list)

    @property
    def final_digest(self) -> str | None:
        valid = [c for c in self.checkpoints if c.signature == "valid"]
        return valid[-1].digest if valid else None


@dataclass
class Result:
    source: str
    source_kind: str
    signature_engine: str = SIGNATURE_ENGINE
    sessions: list[SessionSummary] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    package_files: int = 0
    package_sums: str = "absent"  # "absent" | "checked" | "signed"
    key_ids: list[str] = field(default_factory=list)
    key_fingerprints: dict[str, str] = field(default_factory=dict)  # key id -> key_fingerprint()
    bytes_hashed: int = 0
    anchors: list[str] = field(default_factory=list)  # what outside the evidence it was checked against

    @property
    def anchored(self) -> bool:
        return bool(self.anchors)

    @property
    def verdict(self) -> str:
        """'tampered_or_incomplete' | 'intact' (consistent and anchored) | 'consistent_not_anchored'."""
        if self.errors:
            return "tampered_or_incomplete"
        return VERDICT_INTACT if self.anchored else VERDICT_UNANCHORED

    @property
    def exit_code(self) -> int:
        return {VERDICT_INTACT: EXIT_INTACT, VERDICT_UNANCHORED: EXIT_UNANCHORED}.get(self.verdict, EXIT_BAD)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def ok(self) -> bool:
        """No error found: the evidence is consistent (anchored or not; see `verdict`)."""
        return not self.errors

    def codes(self) -> set[str]:
        return {p.code for p in self.problems}

    def objects(self, code: str | None = None) -> set[str]:
        return {p.object for p in self.problems if code is None or p.code == code}

    def to_json(self) -> dict[str, Any]:
        sessions = []
        for s in self.sessions:
            d = asdict(s)
            d["final_digest"] = s.final_digest
            sessions.append(d)
        return {
            "verifier_version": VERIFIER_VERSION,
            "ok": self.verdict == VERDICT_INTACT,  # only an anchored, consistent result is ok
            "consistent": self.ok,
            "anchored": self.anchored,
            "anchors": self.anchors,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "source": self.source,
            "source_kind": self.source_kind,
            "signature_engine": self.signature_engine,
            "key_ids": self.key_ids,
            "key_fingerprints": self.key_fingerprints,
            "package_sums": self.package_sums,
            "package_files": self.package_files,
            "bytes_hashed": self.bytes_hashed,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "sessions": sessions,
            "problems": [p.to_json() for p in self.problems],
        }


# ------------------------------------------------------------------------------------------------
# The checks
# ------------------------------------------------------------------------------------------------


@dataclass
class _Entry:
    name: str
    file_seq: int
    raw: bytes
    hash: str
    doc: dict[str, Any] | None
    error: str | None

    @property
    def seq(self) -> int | None:
        return self.doc["seq"] if self.doc else None

    @property
    def prev(self) -> str | None:
        return self.doc["prev"] if self.doc else None

    @property
    def kind(self) -> str | None:
        return self.doc["kind"] if self.doc else None

    @property
    def body(self) -> dict[str, Any]:
        return self.doc["body"] if self.doc else {}


@dataclass
class _Checkpoint:
    ordinal: int
    name: str
    body: dict[str, Any] | None
    body_bytes: bytes
    signature: bytes
    error: str | None
    status: str = "malformed"


def _parse_entry(name: str, file_seq: int, raw: bytes) -> _Entry:
    h = sha256_hex(raw)
    try:
        doc = canonical_decode(raw)
    except NotCanonical as exc:
        return _Entry(name, file_seq, raw, h, None, str(exc))
    err = None
    if not isinstance(doc, dict) or set(doc) != ENTRY_FIELDS:
        err = "fields are not those of a manifest entry"
    elif doc["v"] != ENTRY_VERSION:
        err = f"unsupported entry version {doc['v']!r}"
    elif doc["kind"] not in KINDS:
        err = f"unknown entry kind {doc['kind']!r}"
    elif not isinstance(doc["seq"], int) or isinstance(doc["seq"], bool) or doc["seq"] < 0:
        err = "seq is not a non-negative integer"
    elif not isinstance(doc["prev"], str) or not _HEX64.match(doc["prev"]):
        err = "prev is not a SHA-256 hex digest"
    elif not isinstance(doc["time_ns"], int) or not isinstance(doc["body"], dict):
        err = "time_ns or body has the wrong type"
    if err:
        return _Entry(name, file_seq, raw, h, None, err)
    return _Entry(name, file_seq, raw, h, doc, None)


def _loose_key(raw: bytes) -> str | None:
    try:
        doc = json.loads(raw.decode("utf-8"))
        key = doc["body"]["key"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        return None
    return key if isinstance(key, str) else None


def _parse_checkpoint(name: str, ordinal: int, raw: bytes) -> _Checkpoint:
    try:
        doc = canonical_decode(raw)
    except NotCanonical as exc:
        return _Checkpoint(ordinal, name, None, b"", b"", str(exc))
    if not isinstance(doc, dict) or set(doc) != {"body", "signature"}:
        return _Checkpoint(ordinal, name, None, b"", b"", "must have exactly 'body' and 'signature'")
    body = doc["body"]
    if not isinstance(body, dict) or set(body) != CHECKPOINT_FIELDS:
        return _Checkpoint(ordinal, name, None, b"", b"", "body fields malformed")
    if body["v"] != CHECKPOINT_VERSION:
        return _Checkpoint(ordinal, name, None, b"", b"", f"unsupported checkpoint version {body['v']!r}")
    types_ok = (
        isinstance(body["tree_size"], int)
        and not isinstance(body["tree_size"], bool)
        and body["tree_size"] >= 0
        and all(isinstance(body[k], str) for k in ("session", "root", "head", "key_id", "prev_checkpoint"))
        and isinstance(body["time_ns"], int)
        and isinstance(body["final"], bool)
    )
    if not types_ok:
        return _Checkpoint(ordinal, name, None, b"", b"", "body field types malformed")
    sig = _strict_b64(doc["signature"])
    if sig is None:
        return _Checkpoint(ordinal, name, None, b"", b"", "signature is not canonical base64")
    return _Checkpoint(ordinal, name, body, canonical_encode(body), sig, None)


def _strict_b64(value: Any) -> bytes | None:
    """Decode base64 that is exactly what b64encode writes (no stray padding bits or characters)."""
    if not isinstance(value, str):
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if base64.b64encode(raw).decode() == value else None


def _p(
    code: str, obj: str, en: str, zh: str = "", severity: str = ERROR, session: str | None = None
) -> Problem:
    title_en, title_zh = CODES.get(code, (code, code))
    return Problem(code, obj, f"{title_en}: {en}", f"{title_zh}：{zh or en}", severity, session)


make_problem = _p  # public name for sources that report their own problems (e.g. the store)


class Verifier:
    """Runs every check over one source. `verify()` returns a `Result`; it never raises for
    problems found in the evidence, only `VerifyError` when the source cannot be read at all."""

    def __init__(
        self,
        source: Source,
        *,
        sessions: Iterable[str] | None = None,
        trusted_keys: Iterable[bytes] = (),
        expected_digests: Iterable[str] = (),
        package: bool = True,
    ) -> None:
        self.source = source
        self.only_sessions = set(sessions) if sessions is not None else None
        self.trusted: dict[str, bytes] = {}
        for pem in trusted_keys:
            try:
                raw = raw_public_key_from_pem(pem)
            except (ValueError, UnicodeDecodeError) as exc:
                raise UsageError(f"trusted key is not an Ed25519 public key PEM: {exc}") from exc
            self.trusted[key_id_of_raw(raw)] = raw
        self.expected_digests = [d.strip().upper() for d in expected_digests]
        self.package = package
        self.result = Result(source=source.label, source_kind=source.kind)
        self._digests: dict[str, Digest] = {}
        self._keys: dict[str, bytes | None] = {}
        self._missing_keys: set[str] = set()
        # host key id -> (public key, certificate body) or (None, why the certificate is invalid)
        self._certs: dict[str, tuple[bytes | None, dict[str, Any] | str]] = {}

    # -- helpers ----------------------------------------------------------------------------------
    def _add(self, problem: Problem) -> None:
        self.result.problems.append(problem)

    def _hash_all(self, names: Iterable[str]) -> None:
        todo = [n for n in dict.fromkeys(names) if n not in self._digests]
        if not todo:
            return
        workers = min(self.source.hash_workers, len(todo))
        if workers <= 1:
            results: Iterator[Digest] = map(self.source.digest, todo)
            for i, d in enumerate(results):
                self._digests[todo[i]] = d
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for i, d in enumerate(pool.map(self.source.digest, todo)):
                    self._digests[todo[i]] = d
        self.result.bytes_hashed += sum(self._digests[n].size for n in todo)

    def _read_all(self, names: list[str]) -> dict[str, bytes | None]:
        """Small objects (manifest entries, checkpoints), read in parallel where the source allows
        (a store answers each GET in a millisecond or two; a 24 h session has ~10^5 entries)."""
        workers = min(max(1, self.source.hash_workers) * 2, len(names))
        if workers <= 1 or not self.source.parallel_reads:
            return {n: self._read(n) for n in names}
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return dict(zip(names, pool.map(self._read, names)))  # noqa: B905 - same length by construction

    def _read(self, name: str) -> bytes | None:
        try:
            return self.source.read(name)
        except (OSError, KeyError, zipfile.BadZipFile, EOFError, ValueError):
            return None

    def _public_key(
        self, key_id: str, names: set[str], sid: str, at_ns: int | None = None
    ) -> tuple[bytes | None, str]:
        """(raw key, status) for a checkpoint's key id: status 'ok', 'missing', 'malformed',
        'mismatch', 'untrusted', or for a recorder host's key 'cert_invalid' / 'cert_expired'
        (its certificate, checked against the site key, must cover `at_ns`)."""
        if key_id in self.trusted:
            return self.trusted[key_id], "ok"
        if _SID.match(key_id) and host_cert_name(key_id) in names:
            return self._host_key(key_id, names, at_ns)
        return self._site_key(key_id, names)

    def _host_key(self, key_id: str, names: set[str], at_ns: int | None) -> tuple[bytes | None, str]:
        name = host_cert_name(key_id)
        if key_id not in self._certs:
            why = ""
            public: bytes | None = None
            body: dict[str, Any] = {}
            try:
                body, public, signature = parse_host_cert(self._read(name) or b"")
            except ValueError as exc:
                why = f"malformed: {exc}"
            else:
                if body["key_id"] != key_id:
                    why = f"certifies key {body['key_id']}, not {key_id}"
                else:
                    issuer, status = self._site_key(body["issuer"], names)
                    if issuer is None:
                        why = f"issuer key {body['issuer']} is {_KEY_STATUS[status][0]}"
                    elif not ed25519_verify(issuer, signature, canonical_encode(body)):
                        why = f"the site key {body['issuer']} signature does not match the certificate"
            if why:
                self._certs[key_id] = (None, why)
                self._add(
                    _p(
                        "host_certificate_invalid",
                        name,
                        f"host key {key_id}: {why}",
                        f"主机密钥 {key_id}：{why}",
                    )
                )
            else:
                self._certs[key_id] = (public, body)
        public, info = self._certs[key_id]
        if public is None or not isinstance(info, dict):
            return None, "cert_invalid"
        if at_ns is not None and not (info["not_before_ns"] <= at_ns <= info["not_after_ns"]):
            return None, "cert_expired"
        self._keys[key_id] = public
        return public, "ok"

    def _site_key(self, key_id: str, names: set[str]) -> tuple[bytes | None, str]:
        if key_id in self.trusted:
            return self.trusted[key_id], "ok"
        if self.trusted:
            return None, "untrusted"
        if not _SID.match(key_id):
            return None, "missing"
        name = f"site/keys/{key_id}.pem"
        if name not in names:
            return None, "missing"
        if key_id not in self._keys:
            data = self._read(name)
            raw: bytes | None
            try:
                raw = raw_public_key_from_pem(data or b"", strict=True)
            except (ValueError, UnicodeDecodeError):
                raw = None
            self._keys[key_id] = raw
        raw = self._keys[key_id]
        if raw is None:
            return None, "malformed"
        if key_id_of_raw(raw) != key_id:
            return None, "mismatch"
        return raw, "ok"

    # -- top level --------------------------------------------------------------------------------
    def verify(self) -> Result:
        names = self.source.names()
        name_set = set(names)
        sessions: dict[str, list[str]] = {}
        for n in names:
            parts = n.split("/")
            if len(parts) >= 3 and parts[0] == "sessions":
                sessions.setdefault(parts[1], []).append(n)
            elif parts[0] == "sessions" or (
                parts[0] == "site" and not _KEY_NAME.match(n) and not _HOST_CERT_NAME.match(n)
            ):
                self._add(_p("object_extra", n, "not part of the evidence layout", "不属于证据目录结构"))
        wanted = sorted(sessions if self.only_sessions is None else self.only_sessions)
        if not wanted:
            self._add(
                _p(
                    "package_empty",
                    self.source.label,
                    "no sessions/<id>/manifest/ found",
                    "未找到 sessions/<id>/manifest/",
                )
            )
        self._check_key_files(names)
        for sid in wanted:
            self._verify_session(sid, sorted(sessions.get(sid, [])), name_set)
        if self.package:
            self._check_package(names)
        self._check_expected_digests()
        self.result.problems.extend(self.source.problems(names))
        return self._finish()

    def _finish(self) -> Result:
        """Signing keys, their fingerprints and the anchors the result was checked against."""
        self.result.key_ids = sorted(
            {c.key_id for s in self.result.sessions for c in s.checkpoints if c.signature == "valid"}
        )
        for key_id in self.result.key_ids:
            raw = self.trusted.get(key_id) or self._keys.get(key_id)
            if raw is not None:
                self.result.key_fingerprints[key_id] = key_fingerprint(raw)
        # An anchor is something from outside the evidence that a valid signature was checked against.
        if self.trusted and self.result.key_ids:
            self.result.anchors.extend(f"--key {k}" for k in sorted(self.trusted) if k in self.result.key_ids)
            for key_id in self.result.key_ids:  # host keys certified by a trusted site key
                public, info = self._certs.get(key_id, (None, ""))
                if public is not None and isinstance(info, dict) and info["issuer"] in self.trusted:
                    self.result.anchors.append(f"--key {info['issuer']} (certifies host {info['host']} key {key_id})")
        if self.expected_digests:
            self.result.anchors.extend(f"--digest {d}" for d in self.expected_digests)
        return self.result

    def _check_key_files(self, names: list[str]) -> None:
        for n in names:
            if not _KEY_NAME.match(n):
                continue
            key_id = n[len("site/keys/") : -len(".pem")]
            data = self._read(n) or b""
            try:
                raw = raw_public_key_from_pem(data, strict=True)
            except (ValueError, UnicodeDecodeError) as exc:
                self._add(_p("public_key_malformed", n, str(exc), f"无法解析公钥：{exc}"))
                continue
            if key_id_of_raw(raw) != key_id:
                self._add(
                    _p(
                        "public_key_mismatch",
                        n,
                        f"the key in this file has id {key_id_of_raw(raw)}, its name says {key_id} "
                        "(the public key was replaced)",
                        f"文件中公钥的标识为 {key_id_of_raw(raw)}，文件名为 {key_id}（公钥被替换）",
                    )
                )

    # -- one session ------------------------------------------------------------------------------
    def _verify_session(self, sid: str, names: list[str], all_names: set[str]) -> None:
        summary = SessionSummary(sid)
        self.result.sessions.append(summary)
        prefix = f"sessions/{sid}/"
        files: dict[int, _Entry] = {}
        cps: list[_Checkpoint] = []
        others: list[str] = []
        small: list[tuple[str, str, int]] = []  # (folder, name, number)
        for n in names:
            rest = n[len(prefix) :]
            folder, _, leaf = rest.partition("/")
            m = _SEQ_NAME.match(leaf)
            if folder in ("manifest", "checkpoints") and m:
                small.append((folder, n, int(m.group(1))))
            else:
                others.append(n)
        contents = self._read_all([n for _, n, _ in small])
        for folder, n, number in small:
            raw = contents[n]
            if folder == "manifest":
                if raw is None:
                    self._add(_p("entry_edited", n, "cannot be read", "无法读取", session=sid))
                files[number] = _parse_entry(n, number, raw or b"")
            else:
                cps.append(_parse_checkpoint(n, number, raw or b""))
        if not _SID.match(sid):
            self._add(_p("object_extra", prefix, "not a valid session id", "会话标识无效", session=sid))
        if not files:
            self._add(
                _p(
                    "session_empty",
                    f"{prefix}manifest/",
                    "no manifest entries at all",
                    "没有任何清单条目",
                    session=sid,
                )
            )

        for e in files.values():
            if e.error:
                self._add(
                    _p("entry_edited", e.name, e.error, f"条目内容不符合规范格式：{e.error}", session=sid)
                )
            elif e.doc and e.doc["session"] != sid:
                self._add(
                    _p(
                        "entry_misplaced",
                        e.name,
                        f"belongs to session {e.doc['session']!r}",
                        f"属于会话 {e.doc['session']!r}",
                        session=sid,
                    )
                )

        anchor = self._check_checkpoints(sid, cps, all_names, summary)
        ordered = self._walk_chain(sid, files, anchor, summary)
        self._check_checkpoint_roots(sid, cps, ordered)

        authentic = [e for e in ordered if e is not None and e.doc is not None]
        summary.entries = len(files)
        summary.stopped = any(e.kind == "session_stop" for e in authentic)
        summary.final = bool(anchor and anchor.body and anchor.body["final"])
        if not summary.stopped and not summary.final and files:
            self._add(
                _p(
                    "checkpoint_final_missing",
                    f"{prefix}checkpoints/",
                    "the session has no session_stop entry and no final checkpoint: it is still recording, "
                    "or its end was cut off",
                    "会话没有结束条目和最终检查点：仍在录制，或结尾被截去",
                    WARNING,
                    sid,
                )
            )
        damaged = any(p.code in _MANIFEST_DAMAGE and p.session == sid for p in self.result.problems)
        referenced = self._check_objects(sid, authentic, others, summary, damaged)
        # Objects named by entries that are damaged (e.g. re-serialised) are not "extra": the entry is
        # the problem, already reported.
        referenced |= {k for e in files.values() if e.doc is None and (k := _loose_key(e.raw))}
        for n in others:
            if n in referenced:
                continue
            rest = n[len(prefix) :]
            code = "segment_extra" if rest.startswith("segments/") else "object_extra"
            self._add(
                _p(
                    code,
                    n,
                    "not referenced by any authentic manifest entry",
                    "未被任何真实清单条目引用",
                    session=sid,
                )
            )

    def _check_checkpoints(
        self, sid: str, cps: list[_Checkpoint], names: set[str], summary: SessionSummary
    ) -> _Checkpoint | None:
        cps.sort(key=lambda c: c.ordinal)
        anchor: _Checkpoint | None = None
        prev_body_hash: str | None = GENESIS
        prev_size = 0
        expected_ordinal = 0
        for cp in cps:
            while expected_ordinal < cp.ordinal:
                missing = f"sessions/{sid}/checkpoints/{expected_ordinal:08d}.json"
                self._add(
                    _p(
                        "checkpoint_missing",
                        missing,
                        "ordinal missing from the checkpoint sequence",
                        "检查点序号缺失",
                        session=sid,
                    )
                )
                expected_ordinal += 1
                prev_body_hash = None
            expected_ordinal = cp.ordinal + 1
            if cp.error or cp.body is None:
                self._add(_p("checkpoint_malformed", cp.name, cp.error or "malformed", session=sid))
                prev_body_hash = None
                continue
            body = cp.body
            foreign = body["session"] != sid
            if foreign:
                self._add(
                    _p(
                        "checkpoint_malformed",
                        cp.name,
                        f"belongs to session {body['session']!r}",
                        f"属于会话 {body['session']!r}",
                        session=sid,
                    )
                )
            raw, key_status = self._public_key(body["key_id"], names, sid, body["time_ns"])
            if raw is None:
                cp.status = "untrusted" if key_status == "untrusted" else "invalid"
                if key_status == "untrusted":
                    self._add(
                        _p(
                            "public_key_untrusted",
                            cp.name,
                            f"signed with key {body['key_id']}, not with the trusted key(s) "
                            f"{', '.join(sorted(self.trusted))}",
                            f"签名密钥 {body['key_id']} 不是受信任的密钥",
                            session=sid,
                        )
                    )
                elif key_status == "missing" and body["key_id"] not in self._missing_keys:
                    self._missing_keys.add(body["key_id"])
                    self._add(
                        _p(
                            "public_key_missing",
                            f"site/keys/{body['key_id']}.pem",
                            f"needed to check {cp.name} (key {body['key_id']} is neither a site key in "
                            f"site/keys/ nor a certified host key in {host_cert_name(body['key_id'])})",
                            f"校验 {cp.name} 需要此公钥（密钥 {body['key_id']} 既不是站点密钥，也没有主机证书）",
                            session=sid,
                        )
                    )
                # malformed / mismatch key files were reported once by _check_key_files
                self._add(
                    _p(
                        "checkpoint_signature_invalid",
                        cp.name,
                        f"cannot be verified: public key {body['key_id']} is {_KEY_STATUS[key_status][0]}",
                        f"无法验证：公钥 {body['key_id']} {_KEY_STATUS[key_status][1]}",
                        session=sid,
                    )
                )
            elif ed25519_verify(raw, cp.signature, cp.body_bytes):
                cp.status = "valid"
            else:
                cp.status = "invalid"
                self._add(
                    _p(
                        "checkpoint_signature_invalid",
                        cp.name,
                        "the Ed25519 signature does not match the checkpoint body",
                        "Ed25519 签名与检查点内容不符",
                        session=sid,
                    )
                )
            if prev_body_hash is not None and body["prev_checkpoint"] != prev_body_hash:
                self._add(
                    _p(
                        "checkpoint_chain_broken",
                        cp.name,
                        "prev_checkpoint does not match the previous checkpoint",
                        "prev_checkpoint 与上一个检查点不符",
                        session=sid,
                    )
                )
            if body["tree_size"] < prev_size:
                self._add(
                    _p(
                        "checkpoint_chain_broken",
                        cp.name,
                        f"tree_size {body['tree_size']} is smaller than the previous {prev_size}",
                        f"tree_size {body['tree_size']} 小于上一个检查点的 {prev_size}",
                        session=sid,
                    )
                )
            prev_size = max(prev_size, body["tree_size"])
            prev_body_hash = sha256_hex(cp.body_bytes)
            summary.checkpoints.append(
                CheckpointSummary(
                    cp.ordinal,
                    cp.name,
                    body["tree_size"],
                    body["final"],
                    body["time_ns"],
                    body["key_id"],
                    human_digest(cp.body_bytes),
                    cp.status,
                )
            )
            if (
                cp.status == "valid"
                and not foreign
                and (anchor is None or body["tree_size"] >= (anchor.body or {})["tree_size"])
            ):
                anchor = cp
        return anchor

    def _walk_chain(
        self, sid: str, files: dict[int, _Entry], anchor: _Checkpoint | None, summary: SessionSummary
    ) -> list[_Entry | None]:
        """Walk the chain back from the signed head: positions 0..t-1, then the unsigned tail."""
        by_hash: dict[str, list[_Entry]] = {}
        for e in files.values():
            if e.doc is not None:
                by_hash.setdefault(e.hash, []).append(e)
        t = anchor.body["tree_size"] if anchor and anchor.body else 0
        head: str | None = anchor.body["head"] if anchor and anchor.body else GENESIS
        summary.signed_entries = t
        positions: list[_Entry | None] = [None] * t
        consumed: set[int] = set()
        expected: str | None = head
        for pos in range(t - 1, -1, -1):
            name = f"sessions/{sid}/manifest/{pos:08d}.json"
            found = None
            if expected is not None:
                candidates = [e for e in by_hash.get(expected, []) if e.file_seq not in consumed]
                candidates.sort(key=lambda e: (e.file_seq != pos, e.file_seq))
                found = candidates[0] if candidates else None
            if found is not None:
                consumed.add(found.file_seq)
                positions[pos] = found
                if found.seq != pos:
                    self._add(
                        _p(
                            "chain_broken",
                            found.name,
                            f"entry at chain position {pos} says seq {found.seq}",
                            f"链位置 {pos} 的条目序号为 {found.seq}",
                            session=sid,
                        )
                    )
                elif found.file_seq != pos:
                    self._add(
                        _p(
                            "entry_misplaced",
                            found.name,
                            f"holds entry {pos}, stored under the wrong number",
                            f"此文件存放的是第 {pos} 条，编号错误",
                            session=sid,
                        )
                    )
                expected = found.prev
                continue
            here = files.get(pos)
            if here is not None and here.file_seq not in consumed:
                consumed.add(here.file_seq)
                if here.doc is None:
                    expected = None  # already reported as edited (not canonical / malformed)
                    continue
                positions[pos] = here
                if expected is not None:
                    what = "the signed checkpoint's head" if pos == t - 1 else "the next entry's prev link"
                    self._add(
                        _p(
                            "entry_edited",
                            here.name,
                            f"its hash {here.hash[:16]}… differs from {what} ({expected[:16]}…)",
                            f"其哈希值 {here.hash[:16]}… 与{'签名检查点' if pos == t - 1 else '下一条目'}"
                            f"记录的"
                            f" {expected[:16]}… 不符",
                            session=sid,
                        )
                    )
                expected = here.prev
                continue
            renumbered = " (later entries were renumbered)" if here is not None else ""
            self._add(
                _p(
                    "entry_missing",
                    name,
                    f"entry {pos} is covered by a signed checkpoint but absent{renumbered}",
                    f"第 {pos} 条已被签名检查点覆盖，但不存在",
                    session=sid,
                )
            )
            expected = None
        if t and expected is not None and expected != GENESIS:
            first = positions[0]
            self._add(
                _p(
                    "chain_broken",
                    first.name if first else f"sessions/{sid}/manifest/00000000.json",
                    "the first entry does not start the chain (prev is not the genesis value)",
                    "第一条目的 prev 不是起始值",
                    session=sid,
                )
            )
        if t == 0 and anchor is not None and anchor.body and anchor.body["head"] != GENESIS:
            self._add(
                _p("checkpoint_head_mismatch", anchor.name, "empty tree with a non-genesis head", session=sid)
            )

        # The tail: entries after the signed head, in file order.
        ordered: list[_Entry | None] = list(positions)
        tail: list[_Entry] = []
        prev_hash: str | None = (
            positions[-1].hash if positions and positions[-1] else (head if t else GENESIS)
        )
        last = max(files) if files else -1
        for k in range(t, last + 1):
            f = files.get(k)
            if f is not None and f.file_seq in consumed:
                continue
            if f is None:
                self._add(
                    _p(
                        "entry_missing",
                        f"sessions/{sid}/manifest/{k:08d}.json",
                        "numbering hole in the manifest",
                        "清单编号缺口",
                        session=sid,
                    )
                )
                prev_hash = None
                ordered.append(None)
                continue
            consumed.add(f.file_seq)
            if f.doc is None:
                prev_hash = None
                ordered.append(None)
                continue
            if f.seq != k:
                self._add(
                    _p("entry_misplaced", f.name, f"says seq {f.seq}", f"其序号为 {f.seq}", session=sid)
                )
            if prev_hash is not None and f.prev != prev_hash:
                self._add(
                    _p(
                        "chain_broken",
                        f.name,
                        "prev does not match the hash of the entry before it",
                        "prev 与上一条目的哈希值不符",
                        session=sid,
                    )
                )
            prev_hash = f.hash
            tail.append(f)
            ordered.append(f)
        for k, e in sorted(files.items()):
            if k not in consumed and k < t:
                consumed.add(k)
                if e.doc is not None:
                    self._add(
                        _p(
                            "entry_inserted",
                            e.name,
                            "not part of the chain that the signed checkpoint covers",
                            "不属于签名检查点覆盖的哈希链",
                            session=sid,
                        )
                    )
        if tail:
            stopped = any(e is not None and e.kind == "session_stop" for e in ordered)
            n = len(tail)
            if stopped:
                en = (
                    f"{n} entr{'y' if n == 1 else 'ies'} from {tail[0].name} on after the last signed "
                    "checkpoint "
                    "although the session was stopped (possibly inserted)"
                )
                zh = f"会话已结束，但最后一个签名检查点之后仍有 {n} 条条目（可能被插入）"
            else:
                en = (
                    f"{n} entr{'y' if n == 1 else 'ies'} from {tail[0].name} on are not yet covered "
                    "by a signature"
                )
                zh = f"{n} 条条目尚未被签名覆盖（会话可能仍在录制）"
            self._add(_p("unsigned_tail", tail[0].name, en, zh, ERROR if stopped else WARNING, sid))
        return ordered

    def _check_checkpoint_roots(self, sid: str, cps: list[_Checkpoint], ordered: list[_Entry | None]) -> None:
        # Entries up to the first missing/unparseable one can be checked; roots for every size at once.
        complete = next((i for i, e in enumerate(ordered) if e is None or e.doc is None), len(ordered))
        sizes = {
            cp.body["tree_size"] for cp in cps if cp.body is not None and cp.body["tree_size"] <= complete
        }
        roots = merkle_roots_at([e.raw for e in ordered[: max(sizes, default=0)] if e is not None], sizes)
        for cp in cps:
            if cp.body is None:
                continue
            size = cp.body["tree_size"]
            if size not in roots:
                continue  # entries are missing: already reported by name
            root = roots[size].hex()
            head = ordered[size - 1].hash if size and ordered[size - 1] is not None else GENESIS
            if root != cp.body["root"]:
                self._add(
                    _p(
                        "checkpoint_root_mismatch",
                        cp.name,
                        f"Merkle root over entries 0..{size - 1} is {root[:16]}…, the checkpoint says "
                        f"{str(cp.body['root'])[:16]}…",
                        f"条目 0..{size - 1} 的默克尔根与检查点记录不符",
                        session=sid,
                    )
                )
            if head != cp.body["head"]:
                self._add(
                    _p(
                        "checkpoint_head_mismatch",
                        cp.name,
                        f"entry {size - 1} has hash {head[:16]}…, "
                        f"the checkpoint says {str(cp.body['head'])[:16]}…",
                        f"第 {size - 1} 条的哈希值与检查点记录不符",
                        session=sid,
                    )
                )

    def _check_objects(
        self, sid: str, entries: list[_Entry], present: list[str], summary: SessionSummary, damaged: bool
    ) -> set[str]:
        """Re-hash every object the entries name; check each track's order. Returns referenced keys."""
        prefix = f"sessions/{sid}/"
        present_set = set(present)
        refs: list[tuple[_Entry, str, str, int | None, bool]] = []  # entry, key, sha256, bytes, is_segment
        for e in entries:
            body = e.body
            key = body.get("key")
            digest = body.get("sha256")
            if not isinstance(key, str) or not isinstance(digest, str):
                if e.kind == "segment":
                    self._add(_p("entry_edited", e.name, "segment entry lacks key/sha256", session=sid))
                continue
            size = body.get("bytes")
            refs.append(
                (e, key, digest.lower(), size if isinstance(size, int) else None, e.kind == "segment")
            )
        self._hash_all(k for _, k, _, _, _ in refs if k in present_set)
        expected_by_hash: dict[str, str] = {}
        for _, key, digest, _, _ in refs:
            expected_by_hash.setdefault(digest, key)
        referenced: set[str] = set()
        seen: dict[str, str] = {}
        for e, key, digest, size, is_seg in refs:
            kind = "segment" if is_seg else "object"
            if key in seen:
                self._add(
                    _p(
                        "segment_duplicate" if is_seg else "object_altered",
                        e.name,
                        f"names {key}, already named by {seen[key]}",
                        f"引用的 {key} 已被 {seen[key]} 引用",
                        session=sid,
                    )
                )
                continue
            seen[key] = e.name
            referenced.add(key)
            if not key.startswith(prefix):
                self._add(_p("entry_edited", e.name, f"names {key} outside this session", session=sid))
                continue
            if is_seg:
                summary.segments += 1
                summary.bytes += size or 0
                track = f"{e.body.get('source')}/{e.body.get('track')}"
                summary.tracks[track] = summary.tracks.get(track, 0) + 1
            if key not in present_set:
                self._add(
                    _p(
                        f"{kind}_missing",
                        key,
                        f"named by {e.name}",
                        f"清单条目 {e.name} 引用此对象，但其不存在",
                        session=sid,
                    )
                )
                continue
            d = self._digests[key]
            if d.sha256 == digest and d.size == size and d.error is None:
                continue
            if d.sha256 == digest and size is None and d.error is None:
                continue
            if d.error is not None:
                self._add(
                    _p(
                        f"{kind}_altered",
                        key,
                        f"cannot be read to the end ({d.error})",
                        f"无法完整读取（{d.error}）",
                        session=sid,
                    )
                )
            elif d.sha256 in expected_by_hash and expected_by_hash[d.sha256] != key:
                other = expected_by_hash[d.sha256]
                self._add(
                    _p(
                        "segment_reordered" if is_seg else "object_altered",
                        key,
                        f"holds the content of {other}",
                        f"其内容属于 {other}（文件被调换）",
                        session=sid,
                    )
                )
            elif size is not None and d.size < size:
                self._add(
                    _p(
                        f"{kind}_truncated" if is_seg else "object_altered",
                        key,
                        f"{d.size} bytes, the manifest says {size}",
                        f"实际 {d.size} 字节，清单记录 {size} 字节",
                        session=sid,
                    )
                )
            else:
                extra = (
                    ""
                    if size is None or d.size == size
                    else f" (and {d.size} bytes, the manifest says {size})"
                )
                self._add(
                    _p(
                        f"{kind}_altered",
                        key,
                        f"SHA-256 {d.sha256[:16]}… differs from the manifest's {digest[:16]}…{extra}",
                        f"SHA-256 与清单记录不符{extra}",
                        session=sid,
                    )
                )
        gaps = [e for e in entries if e.kind == "gap"]
        self._check_track_order(sid, [e for e, _, _, _, s in refs if s], gaps, damaged)
        return referenced

    def _check_track_order(self, sid: str, segs: list[_Entry], gaps: list[_Entry], damaged: bool) -> None:
        """Per track, in index order (the recorder's numbering; seal threads may append entries a
        little out of order): indexes from 0 without holes or duplicates, wall clock increasing.

        A hole is an error unless a `gap` entry of the track covers the missing time (then the loss
        is on record: a warning). Holes are not reported when the manifest itself is damaged: the
        missing/edited entry is the cause and is named already."""
        gap_spans: dict[tuple[Any, Any], list[tuple[int, int]]] = {}
        for g in gaps:
            b = g.body
            if isinstance(b.get("start_ns"), int) and isinstance(b.get("end_ns"), int):
                gap_spans.setdefault((b.get("source"), b.get("track")), []).append(
                    (b["start_ns"], b["end_ns"])
                )
        tracks: dict[tuple[Any, Any], list[_Entry]] = {}
        for e in segs:
            b = e.body
            idx, first, last = b.get("index"), b.get("wall_first_ns"), b.get("wall_last_ns")
            if not (isinstance(idx, int) and isinstance(first, int) and isinstance(last, int)):
                self._add(
                    _p("entry_edited", e.name, "segment entry lacks index / wall clock times", session=sid)
                )
                continue
            if last < first:
                self._add(
                    _p(
                        "segment_time_order",
                        b["key"],
                        "ends before it starts",
                        "结束时间早于开始时间",
                        session=sid,
                    )
                )
            tracks.setdefault((b.get("source"), b.get("track")), []).append(e)
        for (source, track), items in tracks.items():
            name = f"{source}/{track}"
            items.sort(key=lambda e: (e.body["index"], e.file_seq))
            prev: _Entry | None = None
            for e in items:
                b = e.body
                idx = b["index"]
                expected = 0 if prev is None else prev.body["index"] + 1
                if prev is not None and idx == prev.body["index"]:
                    self._add(
                        _p(
                            "segment_duplicate",
                            b["key"],
                            f"index {idx} of track {name} appears twice ({prev.name}, {e.name})",
                            f"轨道 {name} 的编号 {idx} 出现两次",
                            session=sid,
                        )
                    )
                    continue
                if idx != expected and not damaged:
                    lo = prev.body["wall_last_ns"] if prev is not None else None
                    hi = b["wall_first_ns"]
                    spans = gap_spans.get((source, track), [])
                    covered = any(s <= hi and (lo is None or end >= lo) for s, end in spans)
                    missing = f"{expected}..{idx - 1}" if idx - 1 > expected else str(expected)
                    self._add(
                        _p(
                            "segment_index_gap",
                            b["key"],
                            f"track {name} has no segment {missing} before index {idx}"
                            + (
                                "; a gap entry records the loss"
                                if covered
                                else " and no gap entry covers that time"
                            ),
                            f"轨道 {name} 缺少编号 {missing} 的片段"
                            + ("（已有缺口记录）" if covered else "（无缺口记录）"),
                            WARNING if covered else ERROR,
                            sid,
                        )
                    )
                if prev is not None and b["wall_first_ns"] < prev.body["wall_first_ns"]:
                    self._add(
                        _p(
                            "segment_time_order",
                            b["key"],
                            f"index {idx} starts before index {prev.body['index']} of track {name}",
                            f"轨道 {name} 中编号 {idx} 的开始时间早于编号 {prev.body['index']}",
                            session=sid,
                        )
                    )
                prev = e

    # -- package files ----------------------------------------------------------------------------
    def _check_package(self, names: list[str]) -> None:
        evidence = ("sessions/", "site/")
        loose = [n for n in names if not n.startswith(evidence) and n not in (SUMS_NAME, SUMS_SIG_NAME)]
        self.result.package_files = len(loose)
        if SUMS_NAME not in names:
            for n in loose:
                self._add(
                    _p(
                        "package_file_unverified",
                        n,
                        "the package has no SHA256SUMS covering it",
                        "证据包中没有 SHA256SUMS 覆盖此文件",
                        WARNING,
                    )
                )
            return
        self.result.package_sums = "checked"
        data = self._read(SUMS_NAME) or b""
        listed: dict[str, str] = {}
        text = data.decode("utf-8", errors="replace")
        if data and not text.endswith("\n"):
            self._add(_p("package_sums_malformed", SUMS_NAME, "does not end with a newline", "未以换行结束"))
        for i, line in enumerate(text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"), 1):
            m = _SUMS_LINE.match(line)
            path = m.group(2).removeprefix("./") if m else ""
            if not m or path.startswith("/") or ".." in path.split("/") or path in listed:
                self._add(
                    _p(
                        "package_sums_malformed",
                        SUMS_NAME,
                        f"line {i} is not '<sha256>  <path>'",
                        f"第 {i} 行格式错误",
                    )
                )
                continue
            listed[path] = m.group(1)
        name_set = set(names)
        self._hash_all(p for p in listed if p in name_set)
        for path, digest in listed.items():
            if path not in name_set:
                self._add(
                    _p(
                        "package_file_missing",
                        path,
                        "listed in SHA256SUMS but absent",
                        "列于 SHA256SUMS 但不存在",
                    )
                )
            elif self._digests[path].sha256 != digest or self._digests[path].error:
                self._add(
                    _p(
                        "package_file_altered",
                        path,
                        "SHA-256 differs from SHA256SUMS",
                        "SHA-256 与 SHA256SUMS 记录不符",
                    )
                )
        for n in names:
            if n not in listed and n not in (SUMS_NAME, SUMS_SIG_NAME):
                self._add(
                    _p(
                        "package_file_extra",
                        n,
                        "present but not listed in SHA256SUMS",
                        "存在但未列于 SHA256SUMS",
                    )
                )
        if SUMS_SIG_NAME in names:
            self._check_sums_signature(data, name_set)

    def _check_sums_signature(self, sums: bytes, names: set[str]) -> None:
        raw_sig = self._read(SUMS_SIG_NAME) or b""
        try:
            doc = canonical_decode(raw_sig)
            key_id = doc["key_id"]
            sig = _strict_b64(doc["signature"])
            if sig is None or set(doc) != {"key_id", "signature"}:
                raise TypeError("expected canonical {key_id, signature (base64)}")
        except (NotCanonical, KeyError, TypeError) as exc:
            self._add(_p("package_signature_invalid", SUMS_SIG_NAME, f"malformed ({exc})", "格式错误"))
            return
        raw, status = self._public_key(str(key_id), names, "")
        if raw is None:
            self._add(
                _p(
                    "package_signature_invalid",
                    SUMS_SIG_NAME,
                    f"public key {key_id} is {status}",
                    f"公钥 {key_id} 状态为 {status}",
                )
            )
        elif not ed25519_verify(raw, sig, sums):
            self._add(
                _p(
                    "package_signature_invalid",
                    SUMS_SIG_NAME,
                    "SHA256SUMS.sig does not verify SHA256SUMS (one of the two was altered)",
                    "SHA256SUMS.sig 与 SHA256SUMS 不符（二者之一被修改）",
                )
            )
        else:
            self.result.package_sums = "signed"

    def _check_expected_digests(self) -> None:
        if not self.expected_digests:
            return
        valid = {c.digest for s in self.result.sessions for c in s.checkpoints if c.signature == "valid"}
        for d in self.expected_digests:
            if d not in valid:
                self._add(
                    _p(
                        "checkpoint_digest_not_found",
                        d,
                        "no validly signed checkpoint has this digest (the one signed on paper)",
                        "没有任何签名有效的检查点具有此摘要（纸面签字的摘要）",
                    )
                )


def verify_source(source: Source, **options: Any) -> Result:
    if source.kind in ("zip", "directory") and is_clip(source.names()):  # a store never holds a clip
        return verify_clip_source(source, **options)
    return Verifier(source, **options).verify()


def verify_path(path: str, **options: Any) -> Result:
    """Verify a directory or zip. Raises UsageError (no such path) or VerifyError (unreadable)."""
    source = open_source(path)
    try:
        return verify_source(source, **options)
    finally:
        source.close()


# ------------------------------------------------------------------------------------------------
# Clips: a time range of one session, provable on its own (RFC 9162 inclusion proofs)
# ------------------------------------------------------------------------------------------------
#
# A clip (``tonglu clip``) holds, besides SHA256SUMS(.sig), README.txt, verify.py and clip/*.mp4:
#
#     clip.json                                  {"body": {...}, "signature": base64 Ed25519}: the claim
#     sessions/{sid}/checkpoints/{n:08d}.json    ONE signed checkpoint (the final one when stopped)
#     sessions/{sid}/manifest/{seq:08d}.json     the entries it needs, canonical bytes as stored
#     sessions/{sid}/proofs/{seq:08d}.json       {"v","seq","tree_size","audit_path": [hex...]}
#     sessions/{sid}/segments/...                the whole master segments covering the range
#     site/keys/{key_id}.pem
#
# The clip body claims a range [from_ns, to_ns) of some tracks. Checked here: the clip's and the
# checkpoint's signatures; every entry's audit path against the checkpoint's signed root and tree
# size; every segment of a claimed track that overlaps the range present and re-hashed against its
# entry; every entry between the first and the last of those segments present and hash-linked (so a
# gap recorded meanwhile cannot be left out); the range covered by the segments of every claimed
# track, each hole either inside an included gap entry (reported) or an error; SHA256SUMS signed.

CLIP_NAME = "clip.json"
CLIP_VERSION = 1
PROOF_VERSION = 1
CLIP_FIELDS = frozenset(
    {
        "v",
        "kind",
        "session",
        "from_ns",
        "to_ns",
        "tracks",
        "checkpoint",
        "tree_size",
        "root",
        "key_id",
        "created_ns",
        "created_by",
        "media",
    }
)
PROOF_FIELDS = frozenset({"v", "seq", "tree_size", "audit_path"})
# Consecutive segments of a track meet where one's last frame ends and the next's first begins; a
# seam shorter than this is not a hole (the recorder's gap thresholds are 60 ms audio, 2 frames video).
CLIP_SEAM_TOLERANCE_NS = 100_000_000

CODES.update(
    {
        "clip_malformed": ("clip description malformed", "片段说明格式错误"),
        "clip_signature_invalid": ("clip signature invalid", "片段签名无效"),
        "clip_range_not_covered": ("claimed range not covered by the included segments", "声明的时间段未被片段覆盖"),
        "clip_gap_in_range": ("recorded gap inside the clip's range", "片段时间段内有已记录的间断"),
        "proof_missing": ("inclusion proof missing", "包含证明缺失"),
        "proof_invalid": ("inclusion proof does not lead to the signed root", "包含证明与签名根不符"),
    }
)


def merkle_verify_inclusion(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2 (byte-compatible with evidence/merkle.py verify_inclusion)."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def _iso(ns: int) -> str:
    import datetime as _dt

    dt = _dt.datetime.fromtimestamp(ns // 1_000_000_000, _dt.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{(ns % 1_000_000_000) // 1_000_000:03d}Z"


def is_clip(names: Iterable[str]) -> bool:
    return CLIP_NAME in set(names)


@dataclass
class ClipResult(Result):
    clip: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        doc = super().to_json()
        doc["clip"] = self.clip
        return doc


def _parse_clip(raw: bytes) -> tuple[dict[str, Any] | None, bytes, str | None]:
    """(body, signature, error) of clip.json."""
    try:
        doc = canonical_decode(raw)
    except NotCanonical as exc:
        return None, b"", str(exc)
    if not isinstance(doc, dict) or set(doc) != {"body", "signature"}:
        return None, b"", "must have exactly 'body' and 'signature'"
    body, sig = doc["body"], _strict_b64(doc["signature"])
    if not isinstance(body, dict) or set(body) != CLIP_FIELDS:
        return None, b"", "body fields malformed"
    if body["v"] != CLIP_VERSION or body["kind"] != "clip":
        return None, b"", f"unsupported clip version {body['v']!r}"
    ints = ("from_ns", "to_ns", "tree_size", "created_ns")
    if not all(isinstance(body[k], int) and not isinstance(body[k], bool) for k in ints):
        return None, b"", "times and tree_size must be integers"
    strs = ("session", "checkpoint", "root", "key_id", "created_by")
    if not all(isinstance(body[k], str) for k in strs) or not _SID.match(body["session"]):
        return None, b"", "session, checkpoint, root, key_id must be strings"
    tracks = body["tracks"]
    if not isinstance(tracks, list) or not tracks or not all(
        isinstance(t, str) and t.count("/") == 1 for t in tracks
    ):
        return None, b"", "tracks must be a non-empty list of 'source/track'"
    if not isinstance(body["media"], list):
        return None, b"", "media must be a list"
    if body["to_ns"] <= body["from_ns"]:
        return None, b"", "the range ends before it starts"
    if sig is None:
        return None, b"", "signature is not canonical base64"
    return body, sig, None


def _parse_proof(raw: bytes) -> tuple[dict[str, Any] | None, list[bytes], str | None]:
    try:
        doc = canonical_decode(raw)
    except NotCanonical as exc:
        return None, [], str(exc)
    if not isinstance(doc, dict) or set(doc) != PROOF_FIELDS or doc["v"] != PROOF_VERSION:
        return None, [], "fields are not those of an inclusion proof"
    path = doc["audit_path"]
    if not isinstance(path, list) or not all(isinstance(h, str) and _HEX64.match(h) for h in path):
        return None, [], "audit_path must be a list of SHA-256 hex digests"
    if not all(isinstance(doc[k], int) and not isinstance(doc[k], bool) for k in ("seq", "tree_size")):
        return None, [], "seq and tree_size must be integers"
    return doc, [bytes.fromhex(h) for h in path], None


class ClipVerifier(Verifier):
    """Verifies a clip (see above); the session-level checks of `Verifier` are not run, since a clip
    holds only the entries it needs."""

    def __init__(self, source: Source, **options: Any) -> None:
        super().__init__(source, **options)
        self.result = ClipResult(source=source.label, source_kind=source.kind)
        self.clip_result: ClipResult = self.result

    def verify(self) -> Result:
        names = self.source.names()
        name_set = set(names)
        self._check_key_files(names)
        body, sig, err = _parse_clip(self._read(CLIP_NAME) or b"")
        if body is None:
            self._add(_p("clip_malformed", CLIP_NAME, err or "malformed", f"格式错误：{err}"))
        else:
            self._verify_clip(body, sig, names, name_set)
        self._check_package(names)
        if self.result.package_sums != "signed" and not any(
            p.code == "package_signature_invalid" for p in self.result.problems
        ):
            self._add(
                _p(
                    "package_signature_invalid",
                    SUMS_SIG_NAME,
                    "a clip must carry SHA256SUMS and its signature by the site key",
                    "片段必须包含 SHA256SUMS 及其站点签名",
                )
            )
        self._check_expected_digests()
        self.result.problems.extend(self.source.problems(names))
        return self._finish()

    def _verify_clip(self, body: dict[str, Any], sig: bytes, names: list[str], name_set: set[str]) -> None:
        sid = body["session"]
        summary = SessionSummary(sid)
        self.result.sessions.append(summary)
        tracks = sorted(set(body["tracks"]))
        self.clip_result.clip = {
            "session": sid,
            "from": _iso(body["from_ns"]),
            "to": _iso(body["to_ns"]),
            "from_ns": body["from_ns"],
            "to_ns": body["to_ns"],
            "tracks": tracks,
            "checkpoint": body["checkpoint"],
            "tree_size": body["tree_size"],
            "created_by": body["created_by"],
            "entries": 0,
            "proofs_valid": 0,
            "covered": False,
            "gaps": [],
        }
        raw_key, status = self._public_key(body["key_id"], name_set, sid)
        if raw_key is None:
            self._add(
                _p(
                    "clip_signature_invalid",
                    CLIP_NAME,
                    f"cannot be verified: public key {body['key_id']} is {_KEY_STATUS[status][0]}",
                    f"无法验证：公钥 {body['key_id']} {_KEY_STATUS[status][1]}",
                    session=sid,
                )
            )
        elif not ed25519_verify(raw_key, sig, canonical_encode(body)):
            self._add(
                _p(
                    "clip_signature_invalid",
                    CLIP_NAME,
                    "the Ed25519 signature does not match the clip description (range, tracks or "
                    "checkpoint edited)",
                    "Ed25519 签名与片段说明不符（时间段、轨道或检查点被修改）",
                    session=sid,
                )
            )
        prefix = f"sessions/{sid}/"
        entries: dict[int, _Entry] = {}
        proofs: dict[int, str] = {}
        media: list[str] = []
        for n in names:
            if n in (CLIP_NAME, SUMS_NAME, SUMS_SIG_NAME) or _KEY_NAME.match(n) or not n.startswith("sessions/"):
                continue
            rest = n[len(prefix) :] if n.startswith(prefix) else ""
            folder, _, leaf = rest.partition("/")
            m = _SEQ_NAME.match(leaf)
            if folder == "manifest" and m:
                entries[int(m.group(1))] = _parse_entry(n, int(m.group(1)), self._read(n) or b"")
            elif folder == "proofs" and m:
                proofs[int(m.group(1))] = n
            elif folder == "segments":
                media.append(n)
            elif n != body["checkpoint"]:
                self._add(_p("object_extra", n, "not part of a clip's layout", "不属于片段的目录结构", session=sid))
        root = self._clip_checkpoint(body, name_set, summary)
        authentic = self._clip_entries(sid, entries, proofs, body, root)
        summary.entries = len(entries)
        summary.signed_entries = len(authentic)
        summary.stopped = any(e.kind == "session_stop" for e in authentic.values())
        summary.final = any(c.final and c.signature == "valid" for c in summary.checkpoints)
        summary.stopped = summary.stopped or summary.final  # a final checkpoint is signed at the stop
        self.clip_result.clip["entries"] = len(entries)
        self.clip_result.clip["proofs_valid"] = len(authentic)
        for seq in sorted(set(proofs) - set(entries)):
            self._add(_p("object_extra", proofs[seq], "a proof without its entry", "没有对应条目的证明", session=sid))
        required = self._clip_required(body, authentic, tracks)
        self._clip_contiguity(sid, entries, required, authentic)
        self._clip_media(sid, required, media, summary)
        self._clip_coverage(sid, body, tracks, required, authentic)

    def _clip_checkpoint(self, body: dict[str, Any], names: set[str], summary: SessionSummary) -> bytes | None:
        """The signed root the proofs must reach, or None when the checkpoint cannot be trusted."""
        sid, name = body["session"], body["checkpoint"]
        m = re.match(rf"^sessions/{re.escape(sid)}/checkpoints/(\d{{8}})\.json$", name)
        if m is None or name not in names:
            self._add(
                _p(
                    "checkpoint_missing",
                    name,
                    "the checkpoint the clip's proofs lead to is absent",
                    "片段所依据的签名检查点不存在",
                    session=sid,
                )
            )
            return None
        cp = _parse_checkpoint(name, int(m.group(1)), self._read(name) or b"")
        if cp.body is None:
            self._add(_p("checkpoint_malformed", name, cp.error or "malformed", session=sid))
            return None
        cb = cp.body
        raw, status = self._public_key(cb["key_id"], names, sid)
        if raw is not None and ed25519_verify(raw, cp.signature, cp.body_bytes):
            cp.status = "valid"
        else:
            cp.status = "untrusted" if status == "untrusted" else "invalid"
            why = (
                "the Ed25519 signature does not match the checkpoint body"
                if raw is not None
                else f"cannot be verified: public key {cb['key_id']} is {_KEY_STATUS[status][0]}"
            )
            self._add(_p("checkpoint_signature_invalid", name, why, session=sid))
        summary.checkpoints.append(
            CheckpointSummary(
                cp.ordinal,
                name,
                cb["tree_size"],
                cb["final"],
                cb["time_ns"],
                cb["key_id"],
                human_digest(cp.body_bytes),
                cp.status,
            )
        )
        if cb["session"] != sid:
            self._add(_p("checkpoint_malformed", name, f"belongs to session {cb['session']!r}", session=sid))
            return None
        if cb["tree_size"] != body["tree_size"] or cb["root"] != body["root"]:
            self._add(
                _p(
                    "clip_malformed",
                    CLIP_NAME,
                    "tree_size/root differ from those of the checkpoint it names",
                    "tree_size/root 与所引用的检查点不符",
                    session=sid,
                )
            )
        if cp.status != "valid" or not _HEX64.match(cb["root"]):
            return None
        return bytes.fromhex(cb["root"])

    def _clip_entries(
        self, sid: str, entries: dict[int, _Entry], proofs: dict[int, str], body: dict[str, Any], root: bytes | None
    ) -> dict[int, _Entry]:
        """Entries whose audit path leads to the signed root (the authentic ones)."""
        out: dict[int, _Entry] = {}
        size = body["tree_size"]
        for seq, e in sorted(entries.items()):
            if e.doc is None:
                self._add(_p("entry_edited", e.name, e.error or "malformed", f"条目格式错误：{e.error}", session=sid))
                continue
            if e.seq != seq or e.doc["session"] != sid:
                self._add(
                    _p(
                        "entry_misplaced",
                        e.name,
                        f"holds entry {e.seq} of session {e.doc['session']!r}",
                        f"此文件存放的是会话 {e.doc['session']!r} 的第 {e.seq} 条",
                        session=sid,
                    )
                )
                continue
            pname = proofs.get(seq)
            if pname is None:
                self._add(
                    _p(
                        "proof_missing",
                        f"sessions/{sid}/proofs/{seq:08d}.json",
                        f"entry {seq} has no inclusion proof",
                        f"第 {seq} 条没有包含证明",
                        session=sid,
                    )
                )
                continue
            doc, path, err = _parse_proof(self._read(pname) or b"")
            if doc is None:
                self._add(_p("proof_invalid", pname, err or "malformed", f"格式错误：{err}", session=sid))
                continue
            if doc["seq"] != seq or doc["tree_size"] != size:
                self._add(
                    _p(
                        "proof_invalid",
                        pname,
                        f"proves entry {doc['seq']} in a tree of {doc['tree_size']}, not entry {seq} in the "
                        f"checkpoint's tree of {size}",
                        f"证明的是第 {doc['seq']} 条（树大小 {doc['tree_size']}），与条目或检查点不符",
                        session=sid,
                    )
                )
                continue
            if root is None:
                continue  # the checkpoint is the problem, already named
            if not merkle_verify_inclusion(merkle_leaf(e.raw), seq, size, path, root):
                self._add(
                    _p(
                        "proof_invalid",
                        pname,
                        f"the audit path of {e.name} does not lead to the checkpoint's signed root "
                        "(the entry or its proof was altered)",
                        f"{e.name} 的审计路径不能导出检查点的签名根（条目或证明被修改）",
                        session=sid,
                    )
                )
                continue
            out[seq] = e
        return out

    def _clip_required(self, body: dict[str, Any], authentic: dict[int, _Entry], tracks: list[str]) -> list[_Entry]:
        """Authentic segment entries of the claimed tracks that overlap the claimed range."""
        lo, hi = body["from_ns"], body["to_ns"]
        out = []
        for e in authentic.values():
            b = e.body
            if e.kind != "segment" or f"{b.get('source')}/{b.get('track')}" not in tracks:
                continue
            first, last = b.get("wall_first_ns"), b.get("wall_last_ns")
            if isinstance(first, int) and isinstance(last, int) and first < hi and last > lo:
                out.append(e)
        return out

    def _clip_contiguity(
        self, sid: str, entries: dict[int, _Entry], required: list[_Entry], authentic: dict[int, _Entry]
    ) -> None:
        if not required:
            return
        lo = min(e.file_seq for e in required)
        hi = max(e.file_seq for e in required)
        for k in range(lo, hi + 1):
            e = entries.get(k)
            if e is None:
                self._add(
                    _p(
                        "entry_missing",
                        f"sessions/{sid}/manifest/{k:08d}.json",
                        f"a clip holds every entry from its first segment's ({lo}) to its last one's ({hi}), "
                        "so no gap recorded meanwhile can be left out",
                        f"片段须包含第 {lo} 至第 {hi} 条之间的全部条目（不得遗漏期间记录的间断）",
                        session=sid,
                    )
                )
                continue
            before = entries.get(k - 1)
            link = e.prev or ""
            if k > lo and e.doc is not None and before is not None and link != before.hash:
                # The authentic one of the two (its proof holds) says which one was edited.
                if k in authentic and k - 1 not in authentic:
                    self._add(
                        _p(
                            "entry_edited",
                            before.name,
                            f"its hash {before.hash[:16]}… differs from the next entry's prev link ({link[:16]}…)",
                            f"其哈希值 {before.hash[:16]}… 与下一条目记录的 {link[:16]}… 不符",
                            session=sid,
                        )
                    )
                elif k - 1 in authentic and k not in authentic:
                    self._add(
                        _p(
                            "entry_edited",
                            e.name,
                            "its prev link does not match the entry before it, whose proof holds",
                            "其 prev 与上一条目（包含证明有效）的哈希值不符",
                            session=sid,
                        )
                    )
                else:
                    self._add(
                        _p("chain_broken", e.name, "prev does not match the hash of the entry before it", session=sid)
                    )

    def _clip_media(self, sid: str, required: list[_Entry], media: list[str], summary: SessionSummary) -> None:
        present = set(media)
        keys = [e.body.get("key") for e in required]
        self._hash_all(k for k in keys if isinstance(k, str) and k in present)
        referenced: set[str] = set()
        for e in required:
            b = e.body
            key, digest, size = b.get("key"), b.get("sha256"), b.get("bytes")
            if not isinstance(key, str) or not isinstance(digest, str):
                self._add(_p("entry_edited", e.name, "segment entry lacks key/sha256", session=sid))
                continue
            referenced.add(key)
            summary.segments += 1
            summary.bytes += size if isinstance(size, int) else 0
            track = f"{b.get('source')}/{b.get('track')}"
            summary.tracks[track] = summary.tracks.get(track, 0) + 1
            if key not in present:
                self._add(
                    _p(
                        "segment_missing",
                        key,
                        f"named by {e.name} and inside the claimed range",
                        f"清单条目 {e.name} 引用此片段且其在声明的时间段内，但其不存在",
                        session=sid,
                    )
                )
                continue
            d = self._digests[key]
            if d.error is None and d.sha256 == digest.lower() and (size is None or d.size == size):
                continue
            if d.error is None and isinstance(size, int) and d.size < size:
                self._add(
                    _p(
                        "segment_truncated",
                        key,
                        f"{d.size} bytes, the manifest says {size}",
                        f"实际 {d.size} 字节，清单记录 {size} 字节",
                        session=sid,
                    )
                )
            else:
                self._add(
                    _p(
                        "segment_altered",
                        key,
                        d.error or f"SHA-256 {d.sha256[:16]}… differs from the manifest's {digest[:16]}…",
                        "SHA-256 与清单记录不符",
                        session=sid,
                    )
                )
        for n in media:
            if n not in referenced:
                self._add(
                    _p(
                        "segment_extra",
                        n,
                        "not named by an authentic entry of a claimed track inside the range",
                        "未被声明轨道在该时间段内的真实条目引用",
                        session=sid,
                    )
                )

    def _clip_coverage(
        self, sid: str, body: dict[str, Any], tracks: list[str], required: list[_Entry], authentic: dict[int, _Entry]
    ) -> None:
        lo, hi = body["from_ns"], body["to_ns"]
        gaps: dict[str, list[tuple[int, int, _Entry]]] = {}
        for e in authentic.values():
            b = e.body
            if e.kind != "gap" or not isinstance(b.get("start_ns"), int) or not isinstance(b.get("end_ns"), int):
                continue
            track = f"{b.get('source')}/{b.get('track')}"
            if track in tracks and b["start_ns"] < hi and b["end_ns"] > lo:
                gaps.setdefault(track, []).append((b["start_ns"], b["end_ns"], e))
                self.clip_result.clip["gaps"].append(
                    {
                        "entry": e.name,
                        "track": track,
                        "reason": b.get("reason"),
                        "start": _iso(b["start_ns"]),
                        "end": _iso(b["end_ns"]),
                    }
                )
                self._add(
                    _p(
                        "clip_gap_in_range",
                        e.name,
                        f"track {track} has a recorded gap ({b.get('reason')}) from {_iso(b['start_ns'])} to "
                        f"{_iso(b['end_ns'])}",
                        f"轨道 {track} 在 {_iso(b['start_ns'])} 至 {_iso(b['end_ns'])} 有已记录的间断"
                        f"（{b.get('reason')}）",
                        WARNING,
                        sid,
                    )
                )
        covered = True
        for track in tracks:
            spans = sorted(
                (e.body["wall_first_ns"], e.body["wall_last_ns"])
                for e in required
                if f"{e.body.get('source')}/{e.body.get('track')}" == track
            )
            holes: list[tuple[int, int]] = []
            cursor = lo
            for first, last in spans:
                if first > cursor + CLIP_SEAM_TOLERANCE_NS:
                    holes.append((cursor, first))
                cursor = max(cursor, last)
            if cursor + CLIP_SEAM_TOLERANCE_NS < hi:
                holes.append((cursor, hi))
            track_gaps = sorted((s, t) for s, t, _ in gaps.get(track, []))
            for start, end in holes:
                if _covered_by(start, end, track_gaps):
                    continue
                covered = False
                self._add(
                    _p(
                        "clip_range_not_covered",
                        CLIP_NAME,
                        f"track {track} has no media from {_iso(start)} to {_iso(end)} inside the claimed range "
                        f"{_iso(lo)} – {_iso(hi)}, and no included gap entry accounts for it",
                        f"轨道 {track} 在声明的时间段内 {_iso(start)} 至 {_iso(end)} 没有录像，且无间断记录说明",
                        session=sid,
                    )
                )
        self.clip_result.clip["covered"] = covered


def _covered_by(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    cursor = start
    for s, t in spans:
        if s > cursor + CLIP_SEAM_TOLERANCE_NS:
            break
        cursor = max(cursor, t)
    return cursor + CLIP_SEAM_TOLERANCE_NS >= end


def verify_clip_source(source: Source, **options: Any) -> Result:
    return ClipVerifier(source, **options).verify()


def _clip_human(result: Result) -> str:
    if not isinstance(result, ClipResult) or not result.clip:
        return ""
    c = result.clip
    lines = [
        f"\n片段 Clip of session {c['session']}: {c['from']} – {c['to']} (UTC)\n",
        f"  轨道 tracks: {', '.join(c['tracks'])}\n",
        f"  条目 entries: {c['entries']}, 包含证明有效 inclusion proofs valid: {c['proofs_valid']} "
        f"(tree size {c['tree_size']}, {c['checkpoint']})\n",
        f"  时间段已覆盖 range covered: {'是 yes' if c['covered'] else '否 NO'}\n",
    ]
    for g in c["gaps"]:
        lines.append(f"  间断 gap {g['track']} {g['start']} – {g['end']} ({g['reason']})\n")
    return "".join(lines)


# ------------------------------------------------------------------------------------------------
# Human output and the command line
# ------------------------------------------------------------------------------------------------


UNANCHORED_EXPLANATION = (
    "  内部一致，但未与证据之外的信任锚核对：用新密钥重建并重新签名的伪造证据也会得到同样的结果。\n"
    "  Internally consistent, but not checked against anything outside the evidence: a forgery rebuilt\n"
    "  and re-signed with a new key would look exactly the same.\n"
    "  锚定方法 To anchor it, run again with one of:\n"
    "    --digest <纸面笔录上签字的最终摘要 the final digest signed on the paper record>\n"
    "    --key <站点公钥 PEM the site's public key, obtained from the site; its fingerprint must equal the\n"
    "           one the site publishes 指纹须与站点公布的一致>\n"
)


def format_human(result: Result, limit_per_code: int = 50) -> str:
    out = io.StringIO()
    w = out.write
    if result.verdict == VERDICT_INTACT:
        w("结论 Verdict: 完整 INTACT — 未发现篡改或缺失，且已锚定 (no alteration or loss found; anchored)\n")
    elif result.verdict == VERDICT_UNANCHORED:
        w("结论 Verdict: 一致但未锚定 CONSISTENT, NOT ANCHORED — 未发现不一致 (no inconsistency found)\n")
        w(UNANCHORED_EXPLANATION)
    else:
        w(f"结论 Verdict: 已篡改或不完整 TAMPERED OR INCOMPLETE — {len(result.errors)} 个问题 problem(s)\n")
    w(f"锚定 Anchored by: {'; '.join(result.anchors) if result.anchors else '无 none'}\n")
    w(f"来源 Source: {result.source} ({result.source_kind})\n")
    w(
        f"签名校验 Signatures: checked with {result.signature_engine}"
        f"{'; keys ' + ', '.join(result.key_ids) if result.key_ids else ''}\n"
    )
    for key_id, fp in sorted(result.key_fingerprints.items()):
        w(f"签名密钥指纹 Signing key fingerprint {key_id}: {fp}\n")
        w("  （须与站点公布的指纹一致 must equal the fingerprint the site publishes）\n")
    if result.package_sums != "absent" or result.package_files:
        w(f"证据包文件 Package files: {result.package_files}, SHA256SUMS {result.package_sums}\n")
    for s in result.sessions:
        state = "已结束 stopped" if s.stopped else "未结束 not stopped"
        w(
            f"\n会话 Session {s.session}: {s.entries} 条目 entries ({s.signed_entries} signed), "
            f"{s.segments} 片段 segments, {s.bytes} 字节 bytes, {state}\n"
        )
        for track, n in sorted(s.tracks.items()):
            w(f"  轨道 track {track}: {n} segments\n")
        for c in s.checkpoints:
            final = " final 最终" if c.final else ""
            w(
                f"  检查点 checkpoint #{c.ordinal}: {c.tree_size} entries, digest {c.digest}, "
                f"signature {c.signature}{final}\n"
            )
        if s.final_digest:
            w(f"  最终摘要 Final digest (compare with the paper form 与纸面签字核对): {s.final_digest}\n")
    w(_clip_human(result))
    if result.problems:
        w("\n问题 Problems:\n")
        shown: dict[str, int] = {}
        for p in result.problems:
            shown[p.code] = shown.get(p.code, 0) + 1
            if shown[p.code] > limit_per_code:
                continue
            mark = "错误 ERROR" if p.severity == ERROR else "警告 warning"
            w(f"  [{mark}] {p.code}  {p.object}\n      {p.message}\n      {p.message_zh}\n")
        for code, n in shown.items():
            if n > limit_per_code:
                w(f"  ... {n - limit_per_code} more {code}\n")
    return out.getvalue()


DIGEST_PROMPT = (
    "请输入纸面笔录上签字的最终摘要（形如 ABCDE-12345-…；直接回车跳过则结果为“一致但未锚定”）\n"
    "Final digest from the paper record (Enter to skip: the verdict is then CONSISTENT, NOT ANCHORED): "
)


def ask_digest(stdin: IO[str] | None = None, stderr: IO[str] | None = None) -> list[str]:
    """Ask a person at a terminal for the paper digest. Never asks when stdin is not a TTY (scripts, CI)."""
    stdin = stdin if stdin is not None else sys.stdin
    stderr = stderr if stderr is not None else sys.stderr
    try:
        if stdin is None or not stdin.isatty():
            return []
        stderr.write(DIGEST_PROMPT)
        stderr.flush()
        line = stdin.readline()
    except (OSError, ValueError, EOFError):
        return []
    digest = line.strip()
    return [digest] if digest else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="verify.py",
        description="同录 Tonglu offline evidence verifier: checks hashes, the manifest chain, signed "
        "checkpoints and package files. Exit 0 intact and anchored (--key/--digest), 1 tampered/"
        "incomplete/unreadable, 2 usage error, 3 consistent but not anchored (一致但未锚定).",
    )
    parser.add_argument("path", nargs="?", help="export package (.zip) or evidence directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="PEM",
        help="trusted site public key (PEM); checkpoints must be signed with it",
    )
    parser.add_argument(
        "--digest",
        action="append",
        default=[],
        metavar="DIGEST",
        help="final digest from the paper form; a validly signed checkpoint must have it",
    )
    parser.add_argument("--session", action="append", default=None, metavar="ID", help="only this session")
    args = parser.parse_args(argv)
    path = args.path
    if path is None:
        here = os.path.dirname(os.path.abspath(__file__))
        if os.path.isdir(os.path.join(here, "sessions")):
            path = here  # run from inside an unpacked package
        else:
            parser.print_usage(sys.stderr)
            print("verify.py: error: give a package (.zip) or directory", file=sys.stderr)
            return 2
    try:
        keys = []
        for k in args.key:
            with open(k, "rb") as fh:
                keys.append(fh.read())
        digests = list(args.digest)
        if not keys and not digests:
            digests = ask_digest()
        result = verify_path(path, sessions=args.session, trusted_keys=keys, expected_digests=digests)
    except UsageError as exc:
        print(f"verify.py: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"verify.py: error: {exc}", file=sys.stderr)
        return 2
    except (VerifyError, ValueError) as exc:
        if args.json:
            print(
                json.dumps(
                    {
                        "verifier_version": VERIFIER_VERSION,
                        "ok": False,
                        "verdict": "unreadable",
                        "source": path,
                        "error": str(exc),
                    },
                    ensure_ascii=False,
                )
            )
        else:
            print(f"结论 Verdict: 无法读取 UNREADABLE — {exc}")
        return EXIT_BAD
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False, indent=1))
    else:
        sys.stdout.write(format_human(result))
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
