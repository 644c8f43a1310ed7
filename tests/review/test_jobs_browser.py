"""The replay page's job buttons in headless Chromium: the PDF review report and the export package
are built as background jobs, progress is shown, and the finished file is offered for download."""

from __future__ import annotations

from tests.browser.conftest import BrowserFactory
from tests.integrity.builder import media_file
from tests.review.conftest import serve, with_admin
from tests.web.conftest import ADMIN_TOKEN, PASSWORDS, make_services
from tonglu.bench.synth import synthesize, upload
from tonglu.config import Settings
from tonglu.evidence.objectstore import ObjectStore
from tonglu.evidence.signing import SiteKey
from tonglu.web.app import create_app

S = 1_000_000_000
T0 = 1_767_250_800 * S
SID = "jobs-page-40s"


def test_replay_page_builds_the_pdf_report_and_the_export_as_jobs(
    store_settings: Settings, chromium: BrowserFactory
) -> None:
    settings = with_admin(store_settings, ADMIN_TOKEN)
    media = {(s, t): [media_file(s, t, i) for i in range(3)] for s in ("main", "panorama") for t in ("video", "audio")}
    synth = synthesize(settings, SiteKey.load_or_create(settings.keys_dir), SID, 40, media, t0_ns=T0)
    upload(ObjectStore.from_settings(settings, role="admin"), synth.objects)
    services = make_services(settings, risk_rules=False)
    services.store = ObjectStore.from_settings(settings, role="reviewer")
    services.accounts.create_user("reviewer", "reviewer", PASSWORDS["reviewer"], display_name="审查员")
    b = chromium()
    try:
        with serve(create_app(services), settings) as base:
            b.sign_in(base, 'reviewer', PASSWORDS['reviewer'], '/review')
            b.driver.get(f"{base}/review/{SID}")
            for job, label in (("report", "审查报告 PDF"), ("export", "证据包 export")):
                b.js(f"document.querySelector('button.job[data-job={job}]').click()")
                b.wait_for(f"return document.getElementById('job-status').textContent.includes('{label} 已生成')",
                           timeout=120, what=f"{job} job done")
                href = b.js("const a = document.getElementById('job-download'); return !a.hidden && a.href")
                assert href and "/api/jobs/" in href and href.endswith("/download"), href
                # the page's own session downloads it (cookie), as the link would
                got = b.js(f"return fetch({href!r}).then(r => r.status + ' ' + r.headers.get('content-type'))",)
                assert got.startswith("200 ") and ("pdf" in got if job == "report" else "zip" in got), got
            b.screenshot("jobs-done")
        assert [r["action"] for r in services.audit.query(action="report")], "report job not audited"
        assert not [ln for ln in b.console() if "Content Security Policy" in ln or "Refused to" in ln]
    finally:
        if services.jobs is not None:
            services.jobs.stop()
