"""Fixtures of the web area (real app, one user per role) and the browser, reused for risk alerts;
here the app runs its risk-rule timer (the web area's own fixture turns it off)."""

import pytest

from tests.browser.conftest import chromium  # noqa: F401
from tests.web.conftest import app, client, make_services, staff, web_settings  # noqa: F401
from tonglu.config import Settings
from tonglu.web.services import Services


@pytest.fixture
def services(web_settings: Settings) -> Services:  # noqa: F811
    """With the risk-rule timer: it is what these tests test."""
    return make_services(web_settings, risk_rules=True)
