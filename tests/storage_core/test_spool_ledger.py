"""Spool and ledger on a real filesystem, including crashes between their steps."""

from __future__ import annotations

import itertools
import multiprocessing
import os
from pathlib import Path

import pytest

from tonglu.evidence import keys, merkle
from tonglu.evidence.errors import SpoolCorrupt
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.signing import SiteKey, load_public_pem, verify_signature
from tonglu.evidence.spool import WORK, Spool, SpoolItem


def _ledger(root: Path) -> Ledger:
    spool = Spool(root / "spool")
    return Ledger(root / "ledger", spool, SiteKey.load_or_create(root / "keys"))


def test_spool_keeps_order_and_forgets_only_confirmed(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    a = spool.put_bytes("k/a", b"aaa")
    b = spool.put_bytes("k/b", b"bbb", bucket=WORK)
    assert [i.key for i in spool.pending()] == ["k/a", "k/b"]
    spool.check(a)
    spool.confirm(a)
    assert [i.key for i in spool.pending()] == ["k/b"]
    assert spool.pending()[0].bucket == WORK
    assert b.data_path.read_bytes() == b"bbb"


def test_spool_put_file_moves_a_finished_segment(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    staged = spool.staging_path("s1/main-video-0.webm")
    staged.write_bytes(b"x" * 1000)
    item = spool.put_file("sessions/s1/segments/main/video/00000000.webm", staged)
    assert not staged.exists()
    assert item.size == 1000
    spool.check(item)


def test_corrupt_spool_file_is_detected_and_quarantined_not_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    item = spool.put_bytes("k/a", b"original bytes")
    item.data_path.write_bytes(b"changed bytes!")
    with pytest.raises(SpoolCorrupt, match="changed on disk"):
        spool.check(item)
    where = spool.quarantine(item, "test")
    assert (where / item.data_path.name).read_bytes() == b"changed bytes!"
    assert spool.pending() == []


def test_interrupted_spool_write_is_completed_on_recover(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    item = spool.put_bytes("k/a", b"data")
    # Simulate a crash after the data rename but before the sidecar rename.
    os.replace(item.meta_path, item.meta_path.with_name(item.meta_path.name + ".pending"))
    assert spool.pending() == []
    assert Spool(tmp_path).recover() == 1
    assert [i.key for i in spool.pending()] == ["k/a"]


def test_recover_handles_every_state_a_put_can_be_cut_in(tmp_path: Path) -> None:
    """`put_bytes` renames `.data.tmp` after the `.pending` sidecar's name is durable, then
    publishes: every crash state is completed (data fsynced) or dropped (never acknowledged)."""
    spool = Spool(tmp_path)
    a, b, c = spool.put_bytes("k/a", b"aaaa"), spool.put_bytes("k/b", b"bbbb"), spool.put_bytes("k/c", b"cccc")

    def tmp_of(item: SpoolItem) -> Path:
        return item.data_path.with_name(item.data_path.name + ".tmp")

    # a: sidecar durable, data still under its temporary name
    os.replace(a.meta_path, a.meta_path.with_name(a.meta_path.name + ".pending"))
    os.replace(a.data_path, tmp_of(a))
    # b: published sidecar, data rename lost (a filesystem that reorders renames)
    os.replace(b.data_path, tmp_of(b))
    # c: the put never reached its sidecar: only temporary data
    c.meta_path.unlink()
    os.replace(c.data_path, tmp_of(c))
    assert Spool(tmp_path).recover() == 2  # a: data renamed and published, b: data renamed
    items = {i.key: i for i in spool.pending()}
    assert sorted(items) == ["k/a", "k/b"]
    for key, data in (("k/a", b"aaaa"), ("k/b", b"bbbb")):
        spool.check(items[key])
        assert items[key].data_path.read_bytes() == data
    assert not list(tmp_path.glob("ready/*.tmp")) and not list(tmp_path.glob("ready/*.pending"))


def test_ledger_spools_entries_and_checkpoint_covers_them(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    for i in range(3):
        ledger.append("s1", "note", {"i": i})
    cp = ledger.checkpoint("s1", final=True)
    keys_spooled = [i.key for i in ledger.spool.pending()]
    assert keys_spooled == [keys.manifest_key("s1", i) for i in range(3)] + [keys.checkpoint_key("s1", 0)]
    entries = ledger.entries("s1")
    assert cp.tree_size == 3
    assert cp.root == merkle.root([e.to_bytes() for e in entries]).hex()
    assert cp.head == entries[-1].entry_hash
    assert verify_signature(load_public_pem(ledger.key.public_pem), cp.signature, cp.body_bytes())


def test_ledger_cuts_a_torn_final_line(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    ledger.append("s1", "note", {"i": 0})
    with open(tmp_path / "ledger" / "s1" / "entries.log", "ab") as fh:
        fh.write(b'{"body":{"i":1')  # the process died mid-append
    again = _ledger(tmp_path)
    assert again.head("s1")[0] == 1
    entry = again.append("s1", "note", {"i": 1})
    assert entry.seq == 1
    assert len(again.entries("s1")) == 2


def _append_many(root: str, n: int) -> None:
    ledger = _ledger(Path(root))
    for i in range(n):
        ledger.append("s1", "note", {"pid": os.getpid(), "i": i})


def test_ledger_appends_from_several_processes_form_one_chain(tmp_path: Path) -> None:
    _ledger(tmp_path)  # create the key once
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), 25)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    entries = _ledger(tmp_path).entries("s1")
    assert [e.seq for e in entries] == list(range(75))
    for before, after in itertools.pairwise(entries):
        assert after.prev == before.entry_hash


def test_entries_after_stop_are_signed_at_once(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    ledger.append("s1", "note", {"i": 0})
    ledger.append("s1", "session_stop", {"stopped_by": "t", "reason": ""})
    final = ledger.checkpoint("s1", final=True)
    assert ledger.checkpoint("s1", final=True) == final  # nothing new: no second signature
    ledger.append("s1", "explanation", {"finding_id": "ab", "reason_code": "rest"})
    cps = ledger.checkpoints("s1")
    assert len(cps) == 2
    assert cps[-1].final and cps[-1].tree_size == 3
    assert cps[-1].prev_checkpoint == final.body_hash


def test_find_locates_pending_items_by_key_and_forgets_confirmed(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    items = [spool.put_bytes(f"k/{i}", b"x" * i) for i in range(5)]
    assert spool.find("k/3") == items[3]
    assert spool.find("k/3", bucket=WORK) is None
    spool.confirm(items[3])
    assert spool.find("k/3") is None
    assert spool.find("k/4") == items[4]
