"""Background jobs of the review: working copy, court export, clip, report — on the durable queue.

    jobs = job_service(services)                    # the process's JobService (runner threads lazily)
    job, created = jobs.workcopy(sid, height=720, by="reviewer1")
    jobs.queue.get(job.id).to_json()                # state, progress, ETA, result

The handlers call the integrity package (so they live at the web floor); the queue itself is
`evidence.jobs` and any process that opens the database can run a `JobRunner` with `handlers()`.
`tonglu up` starts `TONGLU_JOB_WORKERS` runner threads (default 1: a working copy's ffmpeg already
uses the cores); a web app without them (tests, `create_app` alone) starts one thread on first use.

Working copies and reports are cached per manifest: the dedupe key is the session's entry count and head hash
(and the picture height), so asking again for an unchanged session returns the finished job and its
files; a new entry (e.g. an explanation) makes a new working copy.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tonglu.evidence.jobs import DONE, Handler, Job, JobQueue, RunnerThreads, start_runner_threads
from tonglu.evidence.logctx import context_logger

log = context_logger(__name__)
WORKCOPY, EXPORT, CLIP, REPORT = "workcopy", "export", "clip", "report"
KINDS = (WORKCOPY, EXPORT, CLIP, REPORT)
REPORT_FORMATS = {"html": "text/html; charset=utf-8", "pdf": "application/pdf"}


def _review(services: Any) -> Any:
    from tonglu.integrity.service import Review

    return Review.from_services(services)


def _out_dir(services: Any, sid: str) -> Path:
    from tonglu.web.downloads import exports_dir, sweep

    root = exports_dir(services.settings.data_dir)
    sweep(root, services.settings.export_ttl_s)
    d = root / sid
    d.mkdir(parents=True, exist_ok=True)
    return d


def handlers(services: Any) -> dict[str, Handler]:
    """The job kinds this process can run, bound to its services."""

    def workcopy(job: Job, progress: Callable[[float], None]) -> Mapping[str, Any]:
        from tonglu.integrity import workcopy as wc

        sid = str(job.session_id)
        result = wc.build_for_session(_review(services), sid, height=int(job.args.get("height", 720)),
                                      progress=progress)
        doc = result.to_json()
        doc["file"] = str(result.mp4)
        doc["name"] = f"{sid}-workcopy.mp4"
        doc["media_type"] = "video/mp4"
        return doc

    def export(job: Job, progress: Callable[[float], None]) -> Mapping[str, Any]:
        from tonglu.integrity.export import export_session

        sid = str(job.session_id)
        progress(0.01)
        name = f"{sid}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.zip"
        out = _out_dir(services, sid) / f"{job.id[:8]}-{name}"
        result = export_session(_review(services), sid, out, with_workcopy=bool(job.args.get("workcopy", True)))
        out.chmod(0o600)
        return {**result.to_json(), "file": str(out), "name": name, "media_type": "application/zip"}

    def clip(job: Job, progress: Callable[[float], None]) -> Mapping[str, Any]:
        from tonglu.integrity.clip import export_clip

        sid = str(job.session_id)
        progress(0.01)
        name = f"{sid}-clip-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.zip"
        out = _out_dir(services, sid) / f"{job.id[:8]}-{name}"
        a = job.args
        result = export_clip(_review(services), sid, int(a["from_ns"]), int(a["to_ns"]), out,
                             sources=a.get("sources"), by=str(a.get("by") or job.created_by or "-"),
                             with_media=bool(a.get("media", True)))
        out.chmod(0o600)
        audit = getattr(services, "audit", None)
        if audit is not None:
            doc = result.to_json()
            detail = {k: v for k, v in doc.items() if k in ("from", "to", "tracks", "checkpoint_digest")}
            audit.append(user=job.created_by or "-", role="job", address="job", action="clip_range",
                         obj=f"session:{sid}/clip", outcome="ok", detail=detail)
        return {**result.to_json(), "file": str(out), "name": name, "media_type": "application/zip"}

    def report(job: Job, progress: Callable[[float], None]) -> Mapping[str, Any]:
        """审查报告: the integrity review report (every segment re-hashed: minutes on a long session),
        as HTML or as PDF printed by headless Chromium."""
        from tonglu.integrity.documents import html_to_pdf, report_bundle

        sid = str(job.session_id)
        fmt = str(job.args.get("format", "html"))
        progress(0.01)
        doc = report_bundle(_review(services), sid)
        progress(0.7 if fmt == "pdf" else 0.95)
        name = f"{sid}-report-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.{fmt}"
        out = _out_dir(services, sid) / f"{job.id[:8]}-{name}"
        if fmt == "pdf":
            html_to_pdf(doc.html, out)
        else:
            out.write_text(doc.html, encoding="utf-8")
        out.chmod(0o600)
        facts = doc.json
        return {"file": str(out), "name": name, "media_type": REPORT_FORMATS[fmt], "format": fmt,
                "verified": facts.get("verified"), "gaps": len(facts.get("gaps") or [])}

    return {WORKCOPY: workcopy, EXPORT: export, CLIP: clip, REPORT: report}


@dataclass
class JobService:
    services: Any
    queue: JobQueue
    threads: int = 1
    _runners: RunnerThreads | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> RunnerThreads:
        with self._lock:
            if self._runners is None:
                self._runners = start_runner_threads(self.queue, handlers(self.services), self.threads)
            return self._runners

    def stop(self) -> None:
        if self._runners is not None:
            self._runners.stop()

    def alive(self) -> bool:
        return self._runners is None or self._runners.alive()

    def submit(self, kind: str, sid: str, args: Mapping[str, Any], *, dedupe_key: str | None = None,
               by: str | None = None) -> tuple[Job, bool]:
        job, created = self.queue.enqueue(kind, session=sid, args=args, dedupe_key=dedupe_key, created_by=by)
        if job.state == DONE and not _result_present(job):
            self.queue.forget(job.id)  # its files were swept: build again
            job, created = self.queue.enqueue(kind, session=sid, args=args, dedupe_key=dedupe_key, created_by=by)
        if job.state != DONE:
            self.start().notify()
        return job, created

    def workcopy(self, sid: str, *, height: int = 720, by: str | None = None) -> tuple[Job, bool]:
        count, head = self.services.ledger.head(sid)
        return self.submit(WORKCOPY, sid, {"height": height}, dedupe_key=f"workcopy:{sid}:{count}:{head}:{height}",
                           by=by)

    def report(self, sid: str, *, fmt: str = "html", by: str | None = None) -> tuple[Job, bool]:
        """The report of this manifest: asked again for an unchanged session, the finished one."""
        if fmt not in REPORT_FORMATS:
            raise ValueError(f"report format must be html or pdf, not {fmt!r}")
        count, head = self.services.ledger.head(sid)
        return self.submit(REPORT, sid, {"format": fmt}, dedupe_key=f"report:{sid}:{count}:{head}:{fmt}", by=by)

    def wait(self, job_id: str, *, timeout_s: float = 3600,
             on_progress: Callable[[Job], None] | None = None, poll_s: float = 0.3) -> Job:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.queue.get(job_id)
            if on_progress is not None:
                on_progress(job)
            if job.state in (DONE, "failed") or time.monotonic() > deadline:
                return job
            time.sleep(poll_s)


def _result_present(job: Job) -> bool:
    path = (job.result or {}).get("file")
    return not path or os.path.exists(str(path))


_service_lock = threading.Lock()


def job_service(services: Any) -> JobService:
    """The process's job service (made on first use: a queue on the shared engine, runner threads
    started when a job is first submitted)."""
    with _service_lock:
        js = getattr(services, "jobs", None)
        if js is None:
            js = JobService(services, JobQueue(services.engine), threads=1)
            services.jobs = js
        return js
