"""A reviewer opens a recorded 30-minute session in headless Chromium: the masters play (MSE, no
re-encoding) with the first frame in under 2 s; seeking into a gap shows the gap card; a segment
whose first version in the store does not match the signed manifest shows an integrity error and is
never played.

The session: 30 minutes of two cameras synthesised from the checked-in real VP8/Opus segments
(re-hashed into a consistent manifest with a signed final checkpoint), all 3,600 segment objects
in the real SeaweedFS; main has a 30 s gap at 10:00, one panorama video segment at 15:00 is tampered."""

from __future__ import annotations

import time

from tests.browser.conftest import BrowserFactory
from tests.integrity.builder import media_file
from tests.review.conftest import serve, with_admin
from tests.web.conftest import ADMIN_TOKEN, PASSWORDS, make_services
from tonglu.bench.synth import synthesize, upload
from tonglu.config import Settings
from tonglu.evidence import keys
from tonglu.evidence.objectstore import ObjectStore
from tonglu.evidence.signing import SiteKey
from tonglu.web.app import create_app

S = 1_000_000_000
T0 = 1_767_250_800 * S  # 2026-01-01T07:00:00Z
SID = "review-30min"
TAMPERED_STEP = 450  # 15:00


def test_reviewer_plays_seeks_gap_and_sees_tampering(store_settings: Settings, chromium: BrowserFactory) -> None:
    settings = with_admin(store_settings, ADMIN_TOKEN)
    media = {(s, t): [media_file(s, t, i) for i in range(3)] for s in ("main", "panorama") for t in ("video", "audio")}
    key = SiteKey.load_or_create(settings.keys_dir)
    synth = synthesize(settings, key, SID, 1800, media, t0_ns=T0, gaps=[("main", 600, 630)], markers=[(60, "出示证据")])
    tampered = keys.segment_key(SID, "panorama", "video", TAMPERED_STEP, "webm")
    assert tampered in synth.objects
    t = time.perf_counter()
    n = upload(ObjectStore.from_settings(settings, role="admin"), synth.objects, tamper=[tampered])
    assert n == 3600 - 2 * 15
    print(f"uploaded {n} segments in {time.perf_counter() - t:.1f} s")

    services = make_services(settings, risk_rules=False)
    services.store = ObjectStore.from_settings(settings, role="reviewer")
    services.accounts.create_user("reviewer", "reviewer", PASSWORDS["reviewer"], display_name="审查员")
    b = chromium()
    with serve(create_app(services), settings) as base:
        b.sign_in(base, 'reviewer', PASSWORDS['reviewer'], '/review')
        b.driver.get(f"{base}/review/{SID}")
        # first frame: requestVideoFrameCallback's time, from the page's navigation start
        first = b.wait_for("const p = window.tongluPlayer; return p && p.firstFrameAt", timeout=10, what="first frame")
        playing = b.wait_for("const v = document.querySelectorAll('video'); return v.length === 2 && "
                             "[...v].every(x => x.currentTime > 0) && [...v].map(x => x.currentTime)",
                             timeout=10, what="both cameras playing")
        b.screenshot("01-playing")
        assert first < 2000, f"first frame after {first:.0f} ms"
        assert len(playing) == 2
        in_sync = b.js("const v = [...document.querySelectorAll('video')]; return Math.abs(v[0].currentTime - "
                       "v[1].currentTime)")
        assert in_sync < 0.5
        # the timeline shows the gap (one per track of main) and the marker
        assert b.js("return document.querySelectorAll('#timeline .tl-gap').length") == 2
        assert b.js("return document.querySelectorAll('#timeline .tl-marker').length") == 1

        # -- seek into the gap: the gap card on main, panorama plays on ------------------------------
        b.js("window.tongluPlayer.seek(615000)")
        card = b.wait_for("const c = document.querySelector('.pb-tile[data-source=main] .pb-card.gap');"
                          "return c && !c.hidden && c.textContent", timeout=10, what="gap card")
        assert "录像中断 30.0 秒" in card
        b.wait_for("const v = document.querySelector('.pb-tile[data-source=panorama] video');"
                   "return v.currentTime > 615.2 && !v.paused", timeout=10, what="panorama plays on through main's gap")
        assert b.js("return document.querySelector('.pb-tile[data-source=panorama] .pb-card.gap').hidden")
        b.screenshot("02-gap-card")

        # -- seek to the tampered segment: integrity error, never played -------------------------------
        b.js(f"window.tongluPlayer.seek({TAMPERED_STEP * 2000 + 500})")
        err = b.wait_for("const c = document.querySelector('.pb-tile[data-source=panorama] .pb-card.error');"
                         "return c && !c.hidden && c.textContent", timeout=10, what="integrity error card")
        assert "完整性校验失败" in err and tampered in err
        b.screenshot("03-integrity-error")
        covered = b.js(f"""const v = document.querySelector('.pb-tile[data-source=panorama] video');
                           const t = {TAMPERED_STEP * 2 + 1}; const b = v.buffered;
                           for (let i = 0; i < b.length; i++) if (t >= b.start(i) && t < b.end(i)) return true;
                           return false;""")
        assert covered is False, "the tampered segment was appended to the player"
        assert b.js("return window.tongluPlayer.errors.map(e => e.source)") == ["panorama"]
        # main (untampered) still plays there
        b.wait_for(f"const v = document.querySelector('.pb-tile[data-source=main] video');"
                   f"return v.currentTime > {TAMPERED_STEP * 2 + 0.6}", timeout=10, what="main plays on")
    refused = [row for row in services.audit.query(action="playback_refused")]
    assert refused and refused[-1]["outcome"] == "rejected"
    assert not [ln for ln in b.console() if "Content Security Policy" in ln or "Refused to" in ln]

