"""WHEP through a recorder worker process (the web app routes to the worker that owns the session):
the relay lives in the worker, next to the publisher's tracks."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.live.media import WhepViewer, packet_publisher
from tests.live.test_relay_e2e import assert_pass_through
from tests.recorder.conftest import ADMIN, make_settings
from tests.recorder.workerfix import cluster, run

pytestmark = pytest.mark.slow


def test_whep_through_a_worker_process(tmp_path: Path) -> None:
    with cluster(make_settings(tmp_path), 1) as (server, _handle):
        s = server.create_session()
        sid, main = s["id"], s["sources"]["main"]
        pub, sent = packet_publisher(main["whip_url"], main["token"], "VP8")
        auth = {"Authorization": f"Bearer {ADMIN}"}
        viewer = WhepViewer(f"{server.url}/whep/{sid}/main", auth)

        async def scenario() -> None:
            await pub.start()
            await pub.wait_connected()
            await viewer.start()
            await viewer.wait_frames("video", 30)
            await viewer.wait_frames("audio", 60)
            async with httpx.AsyncClient(base_url=server.url, headers=auth, timeout=30) as c:
                st = (await c.get(f"/api/sessions/{sid}")).json()
                assert [(v["role"], v["source"], v["state"]) for v in st["viewers"]] == [("admin", "main", "connected")]
                assert st["monitored"] is True
                r = await c.delete(f"/whep/{sid}/main/nosuchviewer")
                assert r.status_code == 404 and r.json()["error"] == "ViewerNotFound"
                assert await viewer.delete() == 200
                assert (await c.get(f"/api/sessions/{sid}")).json()["viewers"] == []
                assert (await c.post(f"/api/sessions/{sid}/stop")).status_code == 200
            await viewer.close()
            await pub.close()

        run(scenario())
    assert_pass_through(viewer, sent, "vp8", 30)


def test_viewer_ended_in_a_worker_is_audited(tmp_path: Path) -> None:
    """A viewer that ends inside the worker (here: the session stops under it, no DELETE) still gets
    its `watch_stop` in the web process's audit trail, as with an in-process recorder."""
    import time

    with cluster(make_settings(tmp_path), 1) as (server, _handle):
        s = server.create_session()
        sid, main = s["id"], s["sources"]["main"]
        pub, _sent = packet_publisher(main["whip_url"], main["token"], "VP8")
        auth = {"Authorization": f"Bearer {ADMIN}"}
        viewer = WhepViewer(f"{server.url}/whep/{sid}/main", auth)

        async def scenario() -> None:
            await pub.start()
            await pub.wait_connected()
            await viewer.start()
            await viewer.wait_frames("video", 10)
            async with httpx.AsyncClient(base_url=server.url, headers=auth, timeout=30) as c:
                assert (await c.post(f"/api/sessions/{sid}/stop")).status_code == 200
            await viewer.close()
            await pub.close()

        run(scenario())
        audit = server.services.audit
        deadline = time.monotonic() + 15
        stops: list[dict[str, object]] = []
        while time.monotonic() < deadline and not stops:
            stops = [r for r in audit.query(action="watch_stop") if sid in str(r.get("object", ""))]
            time.sleep(0.3)
        assert len(stops) == 1, stops
        assert "session_stopped" in str(stops[0])
