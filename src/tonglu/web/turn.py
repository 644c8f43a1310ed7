"""Time-limited TURN credentials for the browsers (the TURN REST scheme coturn implements with
`use-auth-secret` / `static-auth-secret`).

    ice_servers(urls, secret, ttl_s, now_s, who) -> [{"urls": [...], "username": "<expiry>:<who>",
                                                      "credential": base64(HMAC-SHA1(secret, username))}]

The server never stores a credential: coturn recomputes the HMAC and refuses the username once its
expiry (unix seconds) has passed. `who` names the holder in coturn's log (a user, an invitation or
a room) and never contains a colon. Without TURN configured the list is empty (host candidates
only: the LAN case). Pure: no I/O, `now_s` is given.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

_WHO = re.compile(r"[^A-Za-z0-9_.@-]+")


@dataclass(frozen=True)
class TurnCredential:
    urls: tuple[str, ...]
    username: str
    credential: str
    expires_s: int

    def to_json(self) -> dict[str, Any]:
        """One entry of RTCConfiguration.iceServers (plus its expiry, which browsers ignore)."""
        return {"urls": list(self.urls), "username": self.username, "credential": self.credential,
                "expires_s": self.expires_s}


def split_urls(text: str) -> tuple[str, ...]:
    """`TONGLU_TURN_URL` may list several, comma-separated (turn:…?transport=udp, turns:…:5349)."""
    urls = tuple(u.strip() for u in text.split(",") if u.strip())
    for url in urls:
        if not url.startswith(("turn:", "turns:")):
            raise ValueError(f"TURN URL must start with turn: or turns: (got {url!r})")
    return urls


def credential(urls: tuple[str, ...], secret: str, ttl_s: int, now_s: int, who: str) -> TurnCredential:
    expires = int(now_s) + int(ttl_s)
    username = f"{expires}:{_WHO.sub('_', who)[:64] or 'tonglu'}"
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredential(urls, username, base64.b64encode(mac).decode("ascii"), expires)


def ice_servers(settings: Any, now_s: int, who: str) -> list[dict[str, Any]]:
    """What a page passes to RTCPeerConnection: empty without TURN, else one time-limited credential."""
    url, secret = getattr(settings, "turn_url", None), getattr(settings, "turn_secret", None)
    if not url or not secret:
        return []
    return [credential(split_urls(url), secret, settings.turn_ttl_s, now_s, who).to_json()]
