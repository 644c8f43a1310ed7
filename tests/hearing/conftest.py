"""Hearing fixtures: the live relay app (tests/live) with a hearing session and its parties."""

from __future__ import annotations

from tests.browser.conftest import chromium, peers_loop  # noqa: F401
from tests.live.conftest import live_server  # noqa: F401
