"""The audit trail: who did what to which evidence, when, from where, with what outcome.

`AuditLog.record(principal, request, action, obj, outcome)` is what routes call; the guard
middleware (`web/guard.py`) calls it for every route the RBAC matrix marks as audited (views,
streams, downloads, exports...), so plain evidence access needs no code in the routes.

Storage, in this order (the file is the commit point, like the manifest ledger):
1. `data_dir/audit/audit.log`: canonical records, one per line, appended with fsync under an
   flock (several processes may write);
2. the `web_audit` table, for queries, CSV export and the `/audit` page;
3. batches of records spooled to the evidence bucket (Object Lock) under
   `audit/<first seq>-<last seq>.jsonl`, every `batch_records` records or `batch_interval_s`, each
   with a checkpoint signed by the site key (`audit/<first>-<last>.checkpoint.json`, see
   `auditchain`).
`verify()` checks the chain in the file and in the table and that both hold the same bytes, so an
edited, deleted or inserted record in either is detected and named. Both are local and can be
rewritten together, consistently re-hashed; so it also reads the WORM batches (object store at
their first version, plus those still in the spool), checks their signed checkpoints and that the
file and the table reproduce every signed head, naming the first record that differs. Records after
the last batch are not yet covered (noted, not a problem).
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import Request
from sqlalchemy import Engine, func, insert, select

from tonglu.evidence import canonical
from tonglu.evidence.errors import CanonicalError, KeyFileError, StorageError
from tonglu.evidence.fsutil import append_durable, write_durable
from tonglu.evidence.logctx import context_logger
from tonglu.evidence.manifest import GENESIS
from tonglu.evidence.signing import SiteKey, verify_signature
from tonglu.evidence.spool import EVIDENCE, Spool
from tonglu.web import tables as t
from tonglu.web.auditchain import (
    AuditChain,
    AuditRecord,
    ChainCheck,
    SignedBatch,
    batch_checkpoint_key,
    check_batch,
    checkpoint_body,
    compare_with_batches,
    coverage_gaps,
    encode_checkpoint,
    first_divergence,
    parse_batch_key,
    parse_checkpoint_key,
    verify_chain,
)
from tonglu.web.auth import Principal
from tonglu.web.errors import AuditError

log = context_logger(__name__)

CSV_COLUMNS = ("seq", "time_utc", "time_ns", "user", "role", "address", "action", "object", "outcome",
               "detail", "prev", "hash")


def iso_utc(time_ns: int) -> str:
    dt = datetime.fromtimestamp(time_ns / 1e9, tz=UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def audit_batch_key(first: int, last: int) -> str:
    return f"audit/{first:012d}-{last:012d}.jsonl"


def _lines(data: bytes) -> list[bytes]:
    return [ln for ln in data.split(b"\n") if ln]


def _csv_cell(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    # Spreadsheet formula injection: a cell starting with = + - @ (or tab/CR) is made inert.
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and text != "-":
        return "'" + text
    return text


@dataclass
class _State:
    offset: int = 0
    chain: AuditChain = field(default_factory=AuditChain)
    unspooled: list[bytes] = field(default_factory=list)
    spooled_upto: int = 0  # records [0, spooled_upto) are in the spool/store
    last_spool_ns: int = 0
    db_synced: bool = False


class AuditLog:
    def __init__(
        self,
        engine: Engine,
        audit_dir: Path,
        spool: Spool | None = None,
        *,
        clock: Callable[[], int] = time.time_ns,
        batch_records: int = 200,
        batch_interval_s: float = 60.0,
        site_key: SiteKey | None = None,
        store: Any = None,
    ) -> None:
        self.engine = engine
        self.dir = audit_dir
        self.spool = spool
        self.site_key = site_key  # signs each WORM batch's checkpoint; its public key verifies them
        self.store = store  # evidence.objectstore.ObjectStore: where verify() reads the WORM batches
        self._signed: dict[str, SignedBatch] = {}  # batches already checked (immutable under WORM)
        self.clock = clock
        self.batch_records = batch_records
        self.batch_interval_ns = int(batch_interval_s * 1e9)
        self.log_path = audit_dir / "audit.log"
        self._state = _State()
        try:
            audit_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AuditError(f"audit directory {audit_dir} cannot be created: {exc}") from exc

    @classmethod
    def from_settings(cls, settings: Any, spool: Spool | None = None, **kwargs: Any) -> AuditLog:
        if "site_key" not in kwargs:
            try:
                kwargs["site_key"] = SiteKey.load_or_create(settings.keys_dir)
            except (KeyFileError, OSError) as exc:
                raise AuditError(f"the site key that signs the audit trail cannot be loaded: {exc}") from exc
        return cls(t.engine_for(settings.db_url), settings.data_dir / "audit", spool, **kwargs)

    # -- writing -------------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[_State]:
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self._catch_up()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _catch_up(self) -> _State:
        st = self._state
        spooled_file = self.dir / "spooled"
        if spooled_file.exists():
            st.spooled_upto = int(spooled_file.read_text().strip() or 0)
        if self.log_path.exists():
            with open(self.log_path, "rb") as fh:
                fh.seek(st.offset)
                data = fh.read()
            complete = data.rfind(b"\n") + 1
            if complete < len(data):  # torn last line from a crash: it was never acknowledged
                with open(self.log_path, "r+b") as fh:
                    fh.truncate(st.offset + complete)
                    os.fsync(fh.fileno())
            for line in data[:complete].splitlines():
                try:
                    rec = AuditRecord.from_bytes(line)
                except CanonicalError as exc:
                    raise AuditError(f"audit log {self.log_path} holds an invalid record: {exc}") from exc
                st.chain = AuditChain(rec.seq + 1, hashlib.sha256(line).hexdigest())
                if rec.seq >= st.spooled_upto:
                    st.unspooled.append(line)
            st.offset += complete
        waiting = st.chain.next_seq - st.spooled_upto  # another process may have spooled some
        st.unspooled = st.unspooled[-waiting:] if waiting > 0 else []
        if not st.db_synced:
            self._sync_db()
            st.db_synced = True
        return st

    def _sync_db(self) -> None:
        """Insert records the file has and the table lacks (a crash between the two writes)."""
        with self.engine.begin() as conn:
            have = conn.execute(select(func.max(t.audit_records.c.seq))).scalar_one()
            start = -1 if have is None else int(have)
        if start + 1 >= self._state.chain.next_seq:
            return
        with open(self.log_path, "rb") as fh, self.engine.begin() as conn:
            for line in fh:
                rec = AuditRecord.from_bytes(line.rstrip(b"\n"))
                if rec.seq > start:
                    conn.execute(insert(t.audit_records).values(**self._row(rec, line.rstrip(b"\n"))))

    @staticmethod
    def _row(rec: AuditRecord, raw: bytes) -> dict[str, Any]:
        return {
            "seq": rec.seq, "time_ns": rec.time_ns, "user": rec.user, "role": rec.role,
            "address": rec.address,
            "action": rec.action, "object": rec.object, "outcome": rec.outcome,
            "detail": json.dumps(rec.detail, sort_keys=True, ensure_ascii=False), "prev": rec.prev,
            "hash": rec.hash, "raw": raw.decode("utf-8"),
        }

    def append(self, *, user: str, role: str, address: str, action: str, obj: str, outcome: str = "ok",
               detail: dict[str, Any] | None = None) -> AuditRecord:
        with self._locked() as st:
            rec = st.chain.append(now_ns=self.clock(), user=user[:128], role=role[:32], address=address[:64],
                                  action=action[:64], obj=obj[:512], outcome=outcome, detail=detail)
            raw = rec.to_bytes()
            try:
                append_durable(self.log_path, raw + b"\n")
            except OSError as exc:
                st.chain = AuditChain(rec.seq, rec.prev)
                raise AuditError(f"cannot append to audit log {self.log_path}: {exc}") from exc
            st.offset += len(raw) + 1
            st.unspooled.append(raw)
            with self.engine.begin() as conn:
                conn.execute(insert(t.audit_records).values(**self._row(rec, raw)))
            self._maybe_spool(st, force=False)
            return rec

    def check_writable(self) -> None:
        """Raise AuditError unless a record could be appended now (checked before a change is made)."""
        try:
            fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            os.close(fd)
        except OSError as exc:
            raise AuditError(f"audit log {self.log_path} is not writable: {exc}") from exc

    def record(self, principal: Principal | None, request: Request | None, action: str, obj: str,
               outcome: str = "ok", detail: dict[str, Any] | None = None) -> AuditRecord:
        """Audit one event by `principal` (None: anonymous) made through `request` (None: CLI)."""
        address = "-"
        if request is not None and request.client is not None:
            address = request.client.host
        return self.append(
            user=principal.user if principal else "-",
            role=principal.role if principal else "anonymous",
            address=address if request is not None else "cli",
            action=action, obj=obj, outcome=outcome, detail=detail,
        )

    async def arecord(self, principal: Principal | None, request: Request | None, action: str, obj: str,
                      outcome: str = "ok", detail: dict[str, Any] | None = None) -> AuditRecord:
        """`record` for async routes: the fsync happens off the event loop."""
        return await anyio.to_thread.run_sync(
            lambda: self.record(principal, request, action, obj, outcome, detail)
        )

    # -- WORM batches --------------------------------------------------------------------------
    def _maybe_spool(self, st: _State, force: bool) -> None:
        if self.spool is None or not st.unspooled:
            return
        now = self.clock()
        if st.last_spool_ns == 0:
            st.last_spool_ns = now
        due = len(st.unspooled) >= self.batch_records or now - st.last_spool_ns >= self.batch_interval_ns
        if not (due or force):
            return
        first = st.spooled_upto
        last = first + len(st.unspooled) - 1
        batch = b"".join(r + b"\n" for r in st.unspooled)
        try:
            self.spool.put_bytes(audit_batch_key(first, last), batch, content_type="application/x-ndjson",
                                 bucket=EVIDENCE)
            if self.site_key is not None:
                body = checkpoint_body(st.unspooled, batch, time_ns=now, key_id=self.site_key.key_id)
                cp = encode_checkpoint(body, self.site_key.sign(canonical.encode(body)))
                self.spool.put_bytes(batch_checkpoint_key(first, last), cp, content_type="application/json",
                                     bucket=EVIDENCE)
            else:
                log.warning("audit batch %s spooled without a signed checkpoint (no site key)", first)
        except StorageError:
            return  # stays unspooled; the next append retries. The local log is durable.
        write_durable(self.dir / "spooled", str(last + 1).encode())
        st.spooled_upto = last + 1
        st.unspooled = []
        st.last_spool_ns = now

    def flush(self) -> None:
        """Spool every record not yet in a WORM batch (call at shutdown)."""
        with self._locked() as st:
            self._maybe_spool(st, force=True)

    # -- reading -------------------------------------------------------------------------------
    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.audit_records)).scalar_one())

    def query(self, *, user: str | None = None, action: str | None = None, obj: str | None = None,
              since_ns: int | None = None, until_ns: int | None = None, limit: int | None = None,
              newest_first: bool = False) -> list[dict[str, Any]]:
        c = t.audit_records.c
        q = select(t.audit_records)
        if user:
            q = q.where(c.user == user)
        if action:
            q = q.where(c.action == action)
        if obj:
            q = q.where(c.object.contains(obj, autoescape=True))
        if since_ns is not None:
            q = q.where(c.time_ns >= since_ns)
        if until_ns is not None:
            q = q.where(c.time_ns < until_ns)
        q = q.order_by(c.seq.desc() if newest_first else c.seq)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [
            {
                "seq": r.seq, "time_utc": iso_utc(r.time_ns), "time_ns": r.time_ns, "user": r.user,
                "role": r.role, "address": r.address, "action": r.action, "object": r.object,
                "outcome": r.outcome, "detail": r.detail, "prev": r.prev, "hash": r.hash,
            }
            for r in rows
        ]

    def csv_text(self, **filters: Any) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        for row in self.query(**filters):
            writer.writerow([_csv_cell(row[col]) for col in CSV_COLUMNS])
        return out.getvalue()

    def verify(self, store: Any = None) -> ChainCheck:
        """Check the file chain, the table chain, that they hold the same records, and that both
        reproduce the signed WORM batches (from `store`, default `self.store`, and the spool)."""
        file_lines: list[bytes] = []
        if self.log_path.exists():
            file_lines = [ln for ln in self.log_path.read_bytes().split(b"\n") if ln]
        result = verify_chain(file_lines, "audit.log")
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.audit_records).order_by(t.audit_records.c.seq)).all()
        db_lines: list[bytes] = []
        for r in rows:
            raw = r.raw.encode("utf-8")
            db_lines.append(raw)
            try:
                rec = AuditRecord.from_bytes(raw)
            except CanonicalError:
                continue  # reported by verify_chain below
            if self._row(rec, raw) != {k: getattr(r, k) for k in self._row(rec, raw)}:
                result.problems.append(
                    f"database: record seq {r.seq} columns differ from its hashed bytes (edited)"
                )
        db = verify_chain(db_lines, "database")
        result.problems.extend(db.problems)
        for i, (a, b) in enumerate(zip(file_lines, db_lines, strict=False)):
            if a != b:
                result.problems.append(f"record seq {i} differs between audit.log and the database")
                break
        if len(file_lines) != len(db_lines):
            result.problems.append(
                f"audit.log holds {len(file_lines)} records, the database {len(db_lines)} (records missing)"
            )
        self._check_worm(result, file_lines, db_lines, store if store is not None else self.store)
        return result

    # -- the WORM batches ----------------------------------------------------------------------
    def _verify_sig(self, key_id: str, signature: bytes, data: bytes) -> bool:
        key = self.site_key
        return key is not None and key_id == key.key_id and verify_signature(key.public, signature, data)

    def _worm_readers(self, store: Any, result: ChainCheck) -> dict[str, Callable[[], bytes]]:
        """key -> reader of every audit batch/checkpoint: the spool's pending ones, then the store's
        (first version; listed second, so an item confirmed meanwhile is found there)."""
        readers: dict[str, Callable[[], bytes]] = {}
        if self.spool is not None:
            for item in self.spool.pending():
                if item.bucket == EVIDENCE and item.key.startswith("audit/"):
                    readers[item.key] = item.data_path.read_bytes
        if store is None:
            result.notes.append(
                "未连接对象存储：仅与本地待上传的批次比对 no object store here: compared with the batches "
                "still in the local spool only"
            )
            return readers
        try:
            found = store.originals("audit/")
        except StorageError as exc:
            result.problems.append(
                f"store: the WORM batches cannot be read, the trail is unproven — {exc} / 无法读取对象存储中的审计批次"
            )
            return readers

        def reader(key: str, version: str | None) -> Callable[[], bytes]:
            return lambda: bytes(store.get(key, version_id=version))

        for key, kv in found.items():
            result.notes.extend(kv.findings())
            if kv.original is not None:
                readers[key] = reader(key, kv.original.version_id)
        return readers

    def _check_worm(self, result: ChainCheck, file_lines: list[bytes], db_lines: list[bytes], store: Any) -> None:
        readers = self._worm_readers(store, result)
        signed: list[SignedBatch] = []
        unsigned: list[tuple[str, list[bytes], list[str]]] = []
        for key in sorted(k for k in readers if parse_batch_key(k)):
            batch = self._signed.get(key)
            if batch is None:
                span = parse_batch_key(key)
                assert span is not None
                cp_key = batch_checkpoint_key(*span)
                try:
                    data = readers[key]()
                    cp = readers[cp_key]() if cp_key in readers else None
                except (OSError, StorageError) as exc:
                    result.problems.append(f"store: {key} cannot be read ({exc})")
                    continue
                batch, problems = check_batch(key, data, cp, self._verify_sig)
                if batch is None:
                    unsigned.append((key, _lines(data), problems))
                    continue
                self._signed[key] = batch
            signed.append(batch)
        batch_names = {parse_batch_key(k) for k in readers}
        for key in sorted(readers):
            if (span := parse_checkpoint_key(key)) is not None and span not in batch_names:
                result.problems.append(f"store: signed checkpoint {key} has no batch (the batch was removed)")
        covered = {s for b in signed for s in range(b.first, b.last + 1)} if unsigned else set()
        for key, lines, problems in unsigned:
            span = parse_batch_key(key)
            assert span is not None
            first = span[0]
            # A batch whose checkpoint was never written (crash between the two puts) is re-batched
            # with the next one: harmless when its records are all in signed batches, unchanged.
            if lines and all(first + i in covered and first + i < len(file_lines)
                             and file_lines[first + i] == ln for i, ln in enumerate(lines)):
                result.notes.append(f"{key}: no signed checkpoint, but its records are in signed batches")
            else:
                result.problems.extend(problems)
        for a, b in coverage_gaps(signed):
            result.problems.append(f"store: records seq {a}..{b} are in no signed WORM batch (a batch is missing)")
        for where, lines in (("audit.log", file_lines), ("database", db_lines)):
            bad = compare_with_batches(lines, signed)
            if bad is None:
                continue
            try:
                seq = first_divergence(lines, _lines(readers[bad.key]()), bad.first)
            except (OSError, StorageError) as exc:  # read a moment ago; gone or unreachable now
                result.problems.append(
                    f"{where}: records {bad.first}..{bad.last} differ from the signed WORM batch {bad.key} "
                    f"(which cannot be re-read to name the first one: {exc})"
                )
                continue
            result.problems.append(
                f"{where}: record seq {seq} is the first that differs from the signed WORM batch {bad.key} "
                f"(edited, removed or re-chained after it was batched) / 第 {seq} 条记录与已签名的 WORM 批次不符"
            )
        result.worm_records = max((b.last + 1 for b in signed), default=0)
        if len(file_lines) > result.worm_records:
            result.notes.append(
                f"记录 {result.worm_records}..{len(file_lines) - 1} 尚未进入已签名的 WORM 批次 "
                f"records seq {result.worm_records}..{len(file_lines) - 1} are not yet in a signed WORM batch"
            )


def verify_batch_objects(batches: list[bytes]) -> ChainCheck:
    """Verify WORM batches fetched from the store, concatenated in key order."""
    lines = [ln for data in batches for ln in data.split(b"\n") if ln]
    return verify_chain(lines, "store")


__all__ = ["GENESIS", "AuditLog", "audit_batch_key", "iso_utc", "verify_batch_objects"]
