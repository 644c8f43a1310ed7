"""Security tests reuse the areas' real fixtures: the web app (tests/web), the live server with an
in-process recorder (tests/live); worker processes come from tests/recorder/workerfix."""

from tests.live.conftest import live_server  # noqa: F401
from tests.web.conftest import app, client, services, staff, web_settings  # noqa: F401
