"""`tonglu report`, `tonglu gap explain`, `tonglu workcopy`, `tonglu export`, `tonglu clip`.

Errors print one line naming the cause and exit 1 (unknown session, still recording for an export,
unknown finding, bad reason code, ffmpeg failure); usage errors exit 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from tonglu.commands.common import fail

gap_app = typer.Typer(help="间断说明 Gap explanations (append-only, signed).", no_args_is_help=True)




SERVER_HELP = "run on this server as a background job (its URL; env TONGLU_SERVER), with a progress bar"
TOKEN_HELP = "API token for --server (env TONGLU_TOKEN)"


class Bar:
    """A one-line progress bar on stderr: percentage and ETA."""

    def __init__(self, label: str) -> None:
        import time

        self.label = label
        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.last = -1

    def __call__(self, frac: float, eta_s: float | None = None) -> None:
        import time

        frac = max(0.0, min(1.0, frac))
        if eta_s is None and frac > 0.001:
            eta_s = (time.monotonic() - self.t0) * (1 - frac) / frac
        pct = int(frac * 100)
        if not self.tty and pct == self.last:
            return
        self.last = pct
        filled = int(frac * 30)
        eta = f" 预计还需 ETA {eta_s:.0f} s" if eta_s is not None and frac < 1 else ""
        line = f"{self.label} [{'#' * filled}{'.' * (30 - filled)}] {pct:3d}%{eta}"
        sys.stderr.write(("\r" + line) if self.tty else line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def _remote_job(server: str, token: str | None, path: str, *, params: dict[str, Any] | None = None,
                body: dict[str, Any] | None = None, output: str | None = None, label: str) -> dict[str, Any]:
    """Ask `server` for a background job, show its progress, download its file to `output`."""
    import time

    import httpx

    if not token:
        fail("--server needs an API token: --token or TONGLU_TOKEN", 2)
    headers = {"Authorization": f"Bearer {token}"}
    bar = Bar(label)
    with httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=60) as c:
        try:
            r = c.post(path, params=params, json=body)
            if r.status_code not in (200, 202):
                fail(f"{r.status_code} {r.text[:500]}")
            job = r.json()
            while job["state"] not in ("done", "failed"):
                bar(job.get("progress") or 0.0, job.get("eta_s"))
                time.sleep(0.5)
                r = c.get(job["url"])
                if r.status_code != 200:
                    fail(f"{r.status_code} {r.text[:500]}")
                job = r.json()
            bar(1.0 if job["state"] == "done" else job.get("progress") or 0.0)
            bar.done()
            if job["state"] == "failed":
                fail(f"任务失败 job failed: {job.get('error')}")
            if output is not None and job.get("download"):
                with c.stream("GET", job["download"]) as resp:
                    if resp.status_code != 200:
                        fail(f"{resp.status_code} {resp.read()[:500]!r}")
                    with open(output, "wb") as fh:
                        for block in resp.iter_bytes(1 << 20):
                            fh.write(block)
        except httpx.HTTPError as exc:
            fail(f"server {server}: {exc}")
    return job


def _review() -> Any:
    from tonglu.config import Settings, SettingsError
    from tonglu.evidence.errors import StorageError
    from tonglu.integrity.runtime import review_from_settings

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        fail(f"configuration: {exc}", 2)
    try:
        return review_from_settings(settings)
    except StorageError as exc:
        fail(f"{type(exc).__name__}: {exc}")


def _guard(fn: Any) -> Any:
    from tonglu.evidence.errors import StorageError
    from tonglu.integrity.errors import IntegrityError

    try:
        return fn()
    except (IntegrityError, StorageError) as exc:
        fail(f"{type(exc).__name__}: {exc}")


def report(
    session: str = typer.Argument(..., help="session id"),
    fmt: str = typer.Option("json", "--format", "-f", help="json | html | pdf"),
    output: str | None = typer.Option(
        None, "--output", "-o", help="write here instead of stdout (pdf: required)"
    ),
    server: str | None = typer.Option(None, "--server", envvar="TONGLU_SERVER", help=SERVER_HELP),
    token: str | None = typer.Option(None, "--token", envvar="TONGLU_TOKEN", help=TOKEN_HELP),
) -> None:
    """审查报告 The integrity review report of a session (verified, gaps, coverage, custody).
    With --server (html or pdf, --output required) made as the server's background job."""
    if fmt not in ("json", "html", "pdf"):
        fail(f"--format must be json, html or pdf, not {fmt!r}", 2)
    if fmt == "pdf" and output is None:
        fail("--format pdf needs --output FILE.pdf", 2)
    if server:
        if fmt == "json" or output is None:
            fail("--server makes the html or pdf report: give --format html|pdf and --output FILE", 2)
        job = _remote_job(server, token, f"/api/sessions/{session}/jobs/report", body={"format": fmt},
                          output=output, label="审查报告 report")
        typer.echo(json.dumps(job.get("result"), ensure_ascii=False))
        return
    from tonglu.integrity import documents

    review = _review()
    if fmt == "pdf":
        assert output is not None
        _guard(lambda: documents.report_pdf(review, session, Path(output)))
        typer.echo(str(output))
        return
    doc = _guard(lambda: documents.report_bundle(review, session))
    text = json.dumps(doc.json, ensure_ascii=False, indent=1) if fmt == "json" else doc.html
    if output is not None:
        Path(output).write_text(text, encoding="utf-8")
        typer.echo(str(output))
    else:
        sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))


@gap_app.command("explain")
def gap_explain(
    session: str = typer.Argument(..., help="session id"),
    finding_id: str = typer.Argument(..., help="finding id (16 hex digits, from the report)"),
    reason: str = typer.Option(
        ..., "--reason", help="rest | meal | equipment_fault | lawyer_consultation | network | other"
    ),
    text: str = typer.Option(..., "--text", help="what happened"),
    approver: str = typer.Option(..., "--approver", help="who approved"),
    by: str = typer.Option("cli", "--by", help="who writes this explanation"),
) -> None:
    """为间断追加说明 Append a signed explanation to a finding (nothing is ever edited or deleted)."""
    review = _review()
    entry = _guard(
        lambda: review.explain(session, finding_id, reason_code=reason, text=text, approver=approver, by=by)
    )
    typer.echo(
        json.dumps(
            {"session": session, "finding_id": finding_id, "seq": entry.seq, "entry_hash": entry.entry_hash},
            ensure_ascii=False,
        )
    )


def workcopy(
    session: str = typer.Argument(..., help="session id"),
    output: str | None = typer.Option(None, "--output", "-o", help="also copy the MP4 here"),
    height: int = typer.Option(720, "--height", help="output picture height (width follows 16:9)"),
    server: str | None = typer.Option(None, "--server", envvar="TONGLU_SERVER", help=SERVER_HELP),
    token: str | None = typer.Option(None, "--token", envvar="TONGLU_TOKEN", help=TOKEN_HELP),
) -> None:
    """工作副本 Picture-in-picture MP4 (H.264/AAC) with burned-in Beijing time; gaps shown as cards.
    Built here with a progress bar, or with --server as the server's background job."""
    if server:
        job = _remote_job(server, token, f"/api/sessions/{session}/workcopy", params={"height": height},
                          output=output, label="工作副本 workcopy")
        typer.echo(json.dumps(job.get("result"), ensure_ascii=False))
        return
    from tonglu.integrity import workcopy as wc

    review = _review()
    bar = Bar("工作副本 workcopy")
    result = _guard(lambda: wc.build_for_session(review, session, height=height, progress=bar))
    bar(1.0)
    bar.done()
    if output is not None:
        import shutil

        shutil.copyfile(result.mp4, output)
    typer.echo(json.dumps(result.to_json(), ensure_ascii=False))


def export(
    session: str = typer.Argument(..., help="session id"),
    output: str = typer.Option(..., "--output", "-o", help="FILE.zip"),
    no_workcopy: bool = typer.Option(False, "--no-workcopy", help="leave the working copy out"),
    server: str | None = typer.Option(None, "--server", envvar="TONGLU_SERVER", help=SERVER_HELP),
    token: str | None = typer.Option(None, "--token", envvar="TONGLU_TOKEN", help=TOKEN_HELP),
) -> None:
    """出庭证据包 Court export package (masters, manifest, checkpoints, key, report, working copy,
    transcript, audit CSV, README, offline verifier, SHA256SUMS)."""
    if server:
        job = _remote_job(server, token, f"/api/sessions/{session}/jobs/export", body={"workcopy": not no_workcopy},
                          output=output, label="证据包 export")
        typer.echo(json.dumps(job.get("result"), ensure_ascii=False))
        return
    from tonglu.integrity import export as ex

    review = _review()
    result = _guard(lambda: ex.export_session(review, session, Path(output), with_workcopy=not no_workcopy))
    typer.echo(json.dumps(result.to_json(), ensure_ascii=False))


def clip(
    session: str = typer.Argument(..., help="session id"),
    start: str = typer.Option(
        ..., "--from", help="ISO-8601 wall time (no offset = Beijing time) or offset from the session start, 02:10:00"
    ),
    end: str = typer.Option(..., "--to", help="same forms as --from"),
    output: str = typer.Option(..., "--output", "-o", help="FILE.zip"),
    sources: str | None = typer.Option(None, "--sources", help="comma-separated, e.g. main,panorama (default: all)"),
    no_media: bool = typer.Option(False, "--no-media", help="leave the playable MP4 out"),
    by: str = typer.Option("cli", "--by", help="who cuts this clip (recorded in it)"),
    server: str | None = typer.Option(None, "--server", envvar="TONGLU_SERVER", help=SERVER_HELP),
    token: str | None = typer.Option(None, "--token", envvar="TONGLU_TOKEN", help=TOKEN_HELP),
) -> None:
    """片段导出 Clip of a time range with its own proof: whole master segments, their manifest entries
    and RFC 9162 inclusion proofs, the signed checkpoint, site key, gaps, playable MP4, README,
    offline verifier. Verify with `tonglu verify CLIP.zip` or `python3 verify.py CLIP.zip`."""
    chosen = [s.strip() for s in sources.split(",") if s.strip()] if sources else None
    if server:
        job = _remote_job(server, token, f"/api/sessions/{session}/jobs/clip",
                          body={"from": start, "to": end, "sources": chosen, "media": not no_media},
                          output=output, label="片段 clip")
        typer.echo(json.dumps(job.get("result"), ensure_ascii=False))
        return
    from tonglu.integrity.clip import export_clip, session_start_ns
    from tonglu.integrity.clip_plan import parse_time

    review = _review()

    def run() -> Any:
        t0 = session_start_ns(review, session)
        from_ns, to_ns = parse_time(start, t0), parse_time(end, t0)
        return export_clip(
            review, session, from_ns, to_ns, Path(output), sources=chosen, by=by, with_media=not no_media
        )

    result = _guard(run)
    typer.echo(json.dumps(result.to_json(), ensure_ascii=False))
    if not result.intact:
        fail(f"原始片段与清单不符 segment(s) do not match their manifest entries: {', '.join(result.altered)}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("workcopy")(workcopy)
    app.command("export")(export)
    app.command("clip")(clip)
    app.add_typer(gap_app, name="gap")
