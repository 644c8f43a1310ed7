"""Fixtures of the web area (real app, one user per role) and the browser, reused for risk alerts."""

from tests.browser.conftest import chromium  # noqa: F401
from tests.web.conftest import app, client, services, staff, web_settings  # noqa: F401
