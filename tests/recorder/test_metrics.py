"""/metrics from a real recorder: a publishing aiortc peer, its packets and the spool."""

from __future__ import annotations

import asyncio

import httpx

from tests.recorder.conftest import Server
from tests.recorder.test_e2e_aiortc import publish_for
from tests.web.test_ops import _value


def test_metrics_count_a_publishing_stream_and_its_pending_uploads(server: Server) -> None:
    s = server.create_session()
    sid, main = s["id"], s["sources"]["main"]
    loop = asyncio.new_event_loop()
    try:
        pub = loop.run_until_complete(publish_for(main["whip_url"], main["token"], 5.0))
        with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer test-admin-token"}) as c:
            text = c.get("/metrics").text
            assert _value(text, "tonglu_sessions_recording") == 1
            assert _value(text, "tonglu_streams_connected") == 1  # main publishes, panorama does not
            labels = f'{{session="{sid}",source="main",track="video"}}'
            assert _value(text, "tonglu_track_packets", labels) > 50
            assert _value(text, "tonglu_track_packets_lost", labels) == 0
            # no uploader in this test: every sealed segment waits in the spool
            assert _value(text, "tonglu_spool_pending_items") >= 2
            assert _value(text, "tonglu_spool_pending_bytes") > 10_000
            assert _value(text, "tonglu_upload_lag_seconds") > 0
            assert c.post(f"/api/sessions/{sid}/stop", json={"reason": "结束"}).status_code == 200
            text = c.get("/metrics").text
            assert _value(text, "tonglu_sessions_recording") == 0
            assert _value(text, "tonglu_streams_connected") == 0
        loop.run_until_complete(pub.close())
    finally:
        loop.close()
