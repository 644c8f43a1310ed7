"""Workers on any host: the dispatcher is fed by the manifest entries in the index database only,
and a worker host with its own, empty data directory transcribes a session recorded on another
host, reading the audio from the object store by key (checked against the entry's SHA-256)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from tests.transcribe.conftest import LIBRIVOX, compose
from tonglu.bench.simulate import SimSession
from tonglu.evidence.index import Index, record
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool
from tonglu.evidence.uploader import Uploader
from tonglu.transcribe.dispatcher import Dispatcher, IndexEntries
from tonglu.transcribe.queue import FinalJob, JobQueue
from tonglu.transcribe.versions import VersionStore

T0 = 1_717_200_000_000_000_000


def _recorded_elsewhere(seaweed: Any, tmp_path: Path, pg_url: str, sid: str) -> tuple[Any, Ledger, Spool, Index]:
    """A "recorder host": records a session (ledger + spool), the index gets its entries (as
    recorder/indexfeed.py does while recording), the uploader puts the segments in the store."""
    rec = seaweed.settings(tmp_path / "recorder", env={"TONGLU_DATABASE_URL": pg_url,
                                                       "TONGLU_WHISPER_MODEL": "tiny.en",
                                                       "TONGLU_WHISPER_LANGUAGE": "en"})
    spool = Spool(rec.spool_dir)
    ledger = Ledger(rec.ledger_dir, spool, SiteKey.load_or_create(rec.keys_dir))
    index = Index(pg_url)
    audio, _ = compose([(LIBRIVOX[0], 1.0), (LIBRIVOX[1], 1.0)])
    sim = SimSession(spool, ledger, sid, now_ns=T0)
    sim.add_track("main", audio, T0)
    sim.seal_all(4.0)
    record(ledger, index, sid, "marker", {"time_ns": T0 + 10**9, "note": "开始", "by": "li"})
    sim.stop()
    index.sync_from_ledger(ledger, sid)
    up = Uploader(spool, seaweed.object_store(rec), rec, threads=2)
    assert up.drain_once().quarantined == 0 and spool.pending() == []
    return rec, ledger, spool, index


def test_the_index_alone_feeds_the_dispatcher_in_seq_order(seaweed: Any, tmp_path: Path, pg_url: str) -> None:
    rec, ledger, _, index = _recorded_elsewhere(seaweed, tmp_path, pg_url, "S-idx")
    work = dataclasses.replace(rec, data_dir=tmp_path / "worker")  # another host: nothing of the session
    queue = JobQueue.on_database(pg_url)
    versions = VersionStore(work.data_dir / "transcribe" / "versions", Spool(work.spool_dir),
                            Ledger(work.ledger_dir, Spool(work.spool_dir), SiteKey.load_or_create(work.keys_dir)))
    source = IndexEntries(Index(pg_url), batch=3)  # small batches: the offset walks through the seqs
    dispatcher = Dispatcher(source, queue, versions, {"name": "tiny.en"})
    entries = ledger.entries("S-idx")
    n = 0
    while (got := dispatcher.scan()) > 0:
        n += got
    assert n == len(entries) and queue.offset("S-idx") == len(entries)
    audio = [e.body for e in entries if e.kind == "segment" and e.body["media"] == "audio"]
    assert [(s.key, s.sha256) for s in queue.segments("S-idx")] == [(b["key"], b["sha256"]) for b in audio]
    info = queue.session_info("S-idx")
    assert info is not None and info["start_body"] == entries[0].body
    assert info["stopped_ns"] == entries[-1].time_ns
    assert queue.final_jobs("S-idx")  # the stop made the final chunks
    assert not list(work.data_dir.rglob("entries.log"))  # no ledger file on the worker host was read
    assert dispatcher.scan() == 0  # nothing new

    # an entry the index has not got yet (another writer's batch in flight) is waited for, not skipped
    later = [record(ledger, None, "S-idx", "marker", {"time_ns": T0 + i, "note": f"补充{i}", "by": "li"})
             for i in range(2)]
    index.apply(later[1])
    assert dispatcher.scan() == 0 and queue.offset("S-idx") == len(entries)
    index.apply(later[0])
    assert dispatcher.scan() == 2 and queue.offset("S-idx") == len(entries) + 2
    queue.close()


@pytest.mark.whisper
@pytest.mark.slow
def test_a_worker_host_transcribes_a_session_recorded_elsewhere(seaweed: Any, tmp_path: Path, pg_url: str) -> None:
    from tonglu.transcribe.engine import Engine
    from tonglu.transcribe.models import resolve_model
    from tonglu.transcribe.source import evidence_reader
    from tonglu.transcribe.worker import process_final, process_live
    from tonglu.transcribe.workers import model_identity

    sid = "S-far"
    rec, ledger, spool, index = _recorded_elsewhere(seaweed, tmp_path, pg_url, sid)
    work = dataclasses.replace(rec, data_dir=tmp_path / "worker")
    model = model_identity(work, "tiny.en")
    # the dispatcher on the worker host: fed by the index
    dq = JobQueue.on_database(pg_url)
    wspool = Spool(work.spool_dir)
    wledger = Ledger(work.ledger_dir, wspool, SiteKey.load_or_create(work.keys_dir))
    Dispatcher(IndexEntries(Index(pg_url)), dq, VersionStore(work.data_dir / "v", wspool, wledger), model).scan()
    dq.close()  # its leadership ends with it
    # the worker on that host: audio from the store by key (its spool has none), hashes checked
    wq = JobQueue.on_database(pg_url)
    engine = Engine(resolve_model("tiny.en"), compute_type="int8", language="en")
    read = evidence_reader(work)
    done = 0
    while (job := wq.claim("worker-host")) is not None:
        if isinstance(job, FinalJob):
            process_final(job, engine, read, wq, "worker-host")
        else:
            process_live(job, engine, read, wq, "worker-host")
        done += 1
    assert done >= 2 and wspool.pending() == []
    results = wq.final_results(sid)
    assert results is not None
    text = " ".join(ln["text"] for r in results for ln in r["lines"]).lower()
    assert len(text.split()) > 10
    assert not any(r["bad"] for r in results)  # every segment fetched and its SHA-256 matched
    # publishing appends to the session's ledger: the dispatcher of the recorder's host does it
    pub = Dispatcher(IndexEntries(index), JobQueue.on_database(pg_url),
                     VersionStore(rec.data_dir / "transcribe" / "versions", spool, ledger), model)
    published = pub.publish_ready()
    assert [p["origin"] for p in published] == ["live", "final"]
    assert [e.body["origin"] for e in ledger.entries(sid) if e.kind == "transcript"] == ["live", "final"]
    pub.queue.close()
