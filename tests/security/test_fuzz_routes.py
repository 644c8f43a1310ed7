"""Fuzz every route in the OpenAPI schema (schemathesis generates the requests from it, hypothesis
drives them), authenticated as admin (auditor for the audit routes): no request may get a 5xx.

Half of the requests with a `{sid}` go to a real session so they get past "unknown session".
Failures are collected, not shrunk, to keep the run short (about 30 s on 2 cores); the seed is
fixed (derandomize) so CI sees the same requests every run.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from tests.conftest import SeaweedServer
from tests.web.conftest import ADMIN_TOKEN, Staff, start_session
from tonglu.config import Settings
from tonglu.web.services import Services

SID = "s-fuzz-1"
EXAMPLES = 12
# building a working copy (ffmpeg) or an export package of the real session takes seconds per
# request: these get fuzzed path/query values only, never the real session id
HEAVY = {"/api/sessions/{sid}/workcopy", "/api/sessions/{sid}/export.zip", "/api/sessions/{sid}/jobs/export",
         "/api/sessions/{sid}/jobs/clip"}
SKIP = {
    ("GET", "/api/sessions/{sid}/transcript/live"),  # server-sent events: an endless response by design
    ("GET", "/api/sessions/{sid}/alerts/live"),  # the same
    ("GET", "/api/risk/live"),  # the same
}


def _fuzz(op: Any, headers: dict[str, str], counts: dict[str, int], failures: list[str]) -> None:
    key = f"{op.method.upper()} {op.path}"
    turn = itertools.count(1 if op.path in HEAVY else 0, 0 if op.path in HEAVY else 1)
    strategy = op.as_strategy(GenerationMode.POSITIVE)
    try:  # plus requests that break the schema (wrong types, missing fields), where it has any
        strategy = strategy | op.as_strategy(GenerationMode.NEGATIVE)
    except Exception:
        pass

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=strategy)
    def call(case: Any) -> None:
        if case.path_parameters and "sid" in case.path_parameters and next(turn) % 2 == 0:
            case.path_parameters["sid"] = SID
        response = case.call(headers=headers)
        counts[key] = counts.get(key, 0) + 1
        if response.status_code >= 500:
            failures.append(f"{key} {case.formatted_path} -> {response.status_code}: {response.text[:200]!r}\n"
                            f"  reproduce: {case.as_curl_command()}")

    call()


@pytest.fixture
def web_settings(tmp_path: Path, seaweed: SeaweedServer) -> Settings:
    """The fuzzed app has a real object store (legal holds, clips and exports need one)."""
    return seaweed.settings(tmp_path / "data", env={"TONGLU_ADMIN_TOKEN": ADMIN_TOKEN})


def test_no_route_answers_5xx(app: FastAPI, services: Services, staff: Staff, seaweed: SeaweedServer) -> None:
    services.store = seaweed.object_store(services.settings)
    start_session(services, SID)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    counts: dict[str, int] = {}
    started = time.monotonic()
    for result in schema.get_all_operations():
        op = result.ok()
        if (op.method.upper(), op.path) in SKIP:
            continue
        token = staff.tokens["auditor"] if op.path.startswith("/api/audit") else ADMIN_TOKEN
        _fuzz(op, {"Authorization": f"Bearer {token}"}, counts, failures)
    elapsed = time.monotonic() - started
    assert len(counts) >= 50, sorted(counts)  # every route but the endless stream was exercised
    assert failures == [], "\n".join(failures[:20])
    assert elapsed < 120, f"fuzzing took {elapsed:.0f} s"
