"""The report as HTML, in Chinese for a judge (times in Asia/Shanghai, UTC noted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from tonglu.integrity import timeline
from tonglu.integrity.analysis import Analysis
from tonglu.integrity.findings import REASON_LABELS, SEVERITY_LABELS
from tonglu.integrity.timefmt import duration_text, local_text, parse_iso

# The report holds no script: also opened as a file from an export package (no HTTP header there),
# it may run none, load nothing and send no form. The web app sends the same policy as a header.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)


def _local(iso: str | None) -> str:
    if not iso:
        return "—"
    try:
        return local_text(parse_iso(iso))
    except ValueError:
        return str(iso)


def _ms(ms: int | None) -> str:
    return "—" if ms is None else duration_text(int(ms) * 1_000_000)


_ENV.filters["local"] = _local
_ENV.filters["dur_ms"] = _ms
_ENV.filters["reason_label"] = lambda code: REASON_LABELS.get(code, code)
_ENV.filters["severity_label"] = lambda s: SEVERITY_LABELS.get(s, s)


def render(report: dict[str, Any], analysis: Analysis) -> str:
    template = _ENV.get_template("report.html")
    return template.render(r=report, svg=Markup(timeline.render(analysis)), csp=REPORT_CSP)
