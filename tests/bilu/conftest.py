"""Fixtures for the 笔录 tests: the web area's (a real app on a temp data dir, one user per role) and the
transcription area's (a data dir with spool and ledger, the real Whisper tiny.en engine)."""

from tests.browser.conftest import chromium  # noqa: F401
from tests.transcribe.conftest import env, tiny_engine  # noqa: F401
from tests.web.conftest import app, client, services, staff, web_settings  # noqa: F401
