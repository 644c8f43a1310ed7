"""The web area's fixtures (a real app on a temp data dir, one user per role) for the 笔录 API tests."""

from tests.web.conftest import app, client, services, staff, web_settings  # noqa: F401
