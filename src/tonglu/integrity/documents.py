"""Report documents: JSON + HTML from one analysis, and PDF through headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tonglu.integrity import html, report
from tonglu.integrity.analysis import Analysis
from tonglu.integrity.errors import ToolError
from tonglu.integrity.service import Review

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "chromium", "google-chrome")


@dataclass(frozen=True)
class ReportDoc:
    json: dict[str, Any]
    html: str
    analysis: Analysis


def report_bundle(review: Review, session: str, *, now_ns: int | None = None) -> ReportDoc:
    from tonglu.integrity.bilu_store import RecordStore

    analysis = review.analyse(session, now_ns=now_ns)
    doc = report.build(analysis, record_comparison=RecordStore.from_review(review).report_section(session))
    return ReportDoc(doc, html.render(doc, analysis), analysis)


def find_chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def html_to_pdf(html_text: str, output: Path, timeout_s: float = 90.0) -> Path:
    """Print HTML to PDF with headless Chromium (fonts-noto-cjk renders the Chinese)."""
    chromium = find_chromium()
    if chromium is None:
        raise ToolError("PDF 需要 Chromium：未找到 chromium (install Debian package chromium)")
    with tempfile.TemporaryDirectory(prefix="tonglu-pdf-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(html_text, encoding="utf-8")
        out = Path(tmp) / "report.pdf"
        cmd = [
            chromium,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-pdf-header-footer",
            f"--user-data-dir={tmp}/profile",
            f"--print-to-pdf={out}",
            page.as_uri(),
        ]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, timeout=timeout_s, env={**os.environ, "LANG": "zh_CN.UTF-8"}
            )
        except subprocess.TimeoutExpired as exc:
            raise ToolError(f"chromium did not finish printing the PDF within {timeout_s:.0f} s") from exc
        if proc.returncode != 0 or not out.exists() or out.stat().st_size == 0:
            tail = proc.stderr.decode(errors="replace")[-500:]
            raise ToolError(f"chromium failed to print the PDF (exit {proc.returncode}): {tail}")
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, output)
    return output


def report_pdf(review: Review, session: str, output: Path) -> Path:
    doc = report_bundle(review, session)
    return html_to_pdf(doc.html, output)
