"""Every route the app registers, flattened, and a matcher over them.

FastAPI 0.163 keeps included routers as `_IncludedRouter` branches in `app.routes`, so a flat
list with full paths is rebuilt here (prefixes applied). The guard middleware and the RBAC test
both use it: the test's "all routes" and the guard's "this route" are the same list.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from starlette.routing import Mount, compile_path


@dataclass(frozen=True)
class RouteInfo:
    path: str  # full path template, e.g. "/api/sessions/{sid}"
    methods: frozenset[str]  # empty for mounts (any method)
    route: Any  # the APIRoute / Route / Mount object
    mount: bool
    regex: re.Pattern[str]
    convertors: dict[str, Any]

    def match(self, method: str, path: str) -> dict[str, Any] | None:
        m = self.regex.match(path)
        if m is None:
            return None
        if self.methods and method not in self.methods:
            return None
        return {k: self.convertors[k].convert(v) for k, v in m.groupdict().items()}

    def path_matches(self, path: str) -> bool:
        return self.regex.match(path) is not None


def _walk(routes: list[Any], prefix: str) -> Iterator[tuple[str, Any]]:
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:  # an included router
            ctx = getattr(route, "include_context", None)
            yield from _walk(list(original.routes), prefix + (getattr(ctx, "prefix", "") or ""))
        elif isinstance(route, Mount):
            yield prefix + route.path, route
        elif hasattr(route, "path"):
            yield prefix + route.path, route


def flatten(app: Any) -> list[RouteInfo]:
    out = []
    for path, route in _walk(list(app.router.routes), ""):
        if isinstance(route, Mount):
            regex, _fmt, conv = compile_path(path.rstrip("/") + "/{path:path}")
            out.append(RouteInfo(path, frozenset(), route, True, regex, conv))
        else:
            methods = frozenset(getattr(route, "methods", None) or {"GET"})
            regex, _fmt, conv = compile_path(path)
            out.append(RouteInfo(path, methods, route, False, regex, conv))
    return out


def _signature(app: Any) -> tuple[int, ...]:
    sig = [len(app.router.routes)]
    for r in app.router.routes:
        original = getattr(r, "original_router", None)
        if original is not None:
            sig.append(len(original.routes))
    return tuple(sig)


class RouteIndex:
    """Finds the route a request goes to (first full match, like the router)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._sig: tuple[int, ...] = ()
        self._routes: list[RouteInfo] = []

    def routes(self) -> list[RouteInfo]:
        sig = _signature(self.app)
        if sig != self._sig:
            self._routes = flatten(self.app)
            self._sig = sig
        return self._routes

    def match(self, method: str, path: str) -> tuple[RouteInfo, dict[str, Any]] | None:
        for info in self.routes():
            params = info.match(method, path)
            if params is not None:
                return info, params
        return None
