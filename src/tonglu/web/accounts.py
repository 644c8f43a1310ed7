"""Accounts: users with argon2 password hashes, page sessions, API tokens, invitations.

This is what `web/auth.py` asks "who is calling?" (`resolve_bearer`, `resolve_cookie`). Secrets
(cookie values, API tokens, invitation tokens) are random, shown once, and stored only as their
SHA-256, so a copy of the database does not let anyone log in. Token prefixes say what a secret is:
`tlk_` API token, `tls_` page session (cookie), `tli_` invitation.

Remote participants (prosecutor, judge, lawyer...) have no account: an invitation bound to one
session resolves to `Principal(role="participant", session_scope=<session id>)`; it expires and can
be revoked, and revoking it ends the page sessions opened with it at once.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request
from sqlalchemy import Engine, func, insert, select, update

from tonglu.evidence.keys import safe_id
from tonglu.web import tables as t
from tonglu.web.auth import ROLES, Principal
from tonglu.web.errors import AccountError, InvitationError, UnknownUser, UserExists

SESSION_COOKIE = "tonglu_session"
ROLE_LABELS = {
    "admin": "管理员",
    "interviewer": "讯问人员",
    "supervisor": "监督人员",
    "participant": "远程参与人",
    "reviewer": "审查人员",
    "auditor": "审计人员",
}
USER_ROLES = tuple(r for r in ROLES if r != "participant")  # participants come by invitation
SUB_ROLES = {
    "prosecutor": "检察官",
    "judge": "法官",
    "lawyer": "辩护律师",
    "interpreter": "翻译",
    "clerk": "书记员",  # a hearing's clerk: marks the phases, may start a consultation
    "defendant": "被告人",  # a defendant joining from elsewhere (usually the room itself)
    "other": "其他",
}
MIN_PASSWORD_LEN = 10
DEFAULT_API_TOKEN_TTL_S = 90 * 86400  # TONGLU_API_TOKEN_TTL_DAYS
# Names principals that are not accounts go by (the automation token, the command line, anonymous
# callers, invitations): an account named like one would be mistaken for it in the audit trail.
RESERVED_USERNAMES = frozenset({
    "admin-token", "admin_token", "admintoken", "anonymous", "cli", "system", "root", "tonglu",
    "recorder", "invitation", "participant", "tests",
})
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class User:
    username: str
    display_name: str
    role: str
    disabled: bool
    created_ns: int

    def principal(self) -> Principal:
        return Principal(user=self.username, role=self.role, display_name=self.display_name or self.username)


@dataclass(frozen=True)
class ApiToken:
    id: str
    username: str
    label: str
    created_ns: int
    expires_ns: int | None
    revoked_ns: int | None


@dataclass(frozen=True)
class Invitation:
    id: str
    session_id: str
    name: str
    sub_role: str
    source: str  # the source id this participant publishes as: "remote-<id>"
    created_by: str
    created_ns: int
    expires_ns: int
    revoked_ns: int | None
    revoked_by: str | None

    def state(self, now_ns: int) -> str:
        if self.revoked_ns is not None:
            return "revoked"
        if now_ns >= self.expires_ns:
            return "expired"
        return "active"

    def principal(self) -> Principal:
        return Principal(
            user=f"invitation:{self.id}",
            role="participant",
            display_name=self.name,
            session_scope=self.session_id,
            extra={"sub_role": self.sub_role, "invitation": self.id, "source": self.source},
        )

    def to_json(self, now_ns: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "session": self.session_id,
            "name": self.name,
            "sub_role": self.sub_role,
            "source": self.source,
            "created_by": self.created_by,
            "created_ns": self.created_ns,
            "expires_ns": self.expires_ns,
            "revoked_ns": self.revoked_ns,
            "revoked_by": self.revoked_by,
            "state": self.state(now_ns),
        }


def validate_username(username: str) -> str:
    if not _USERNAME.match(username):
        raise AccountError(
            f"用户名无效 (invalid username {username!r}: lowercase letters, digits, . _ -; max 64)"
        )
    if username in RESERVED_USERNAMES or username.startswith(("admin-token", "cli.", "invitation")):
        raise AccountError(f"用户名 {username!r} 为系统保留 (user name {username!r} is reserved)")
    return username


def validate_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LEN:
        raise AccountError(f"密码太短 (password must have at least {MIN_PASSWORD_LEN} characters)")
    if len(password) > 1024:
        raise AccountError("密码太长 (password longer than 1024 characters)")
    return password


def validate_role(role: str) -> str:
    if role == "participant":
        raise AccountError(
            "远程参与人通过邀请链接加入，不建账号 (participants join by invitation, not by account)"
        )
    if role not in USER_ROLES:
        raise AccountError(f"未知角色 (unknown role {role!r}; one of {', '.join(USER_ROLES)})")
    return role


class Accounts:
    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], int] = time.time_ns,
        session_idle_s: int = 12 * 3600,
        session_max_s: int = 36 * 3600,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.session_idle_ns = session_idle_s * 10**9
        self.session_max_ns = session_max_s * 10**9
        self.hasher = hasher or PasswordHasher()
        self.api_token_ttl_s = DEFAULT_API_TOKEN_TTL_S  # for tokens issued without a ttl (and old ones)
        self._dummy_hash = self.hasher.hash(secrets.token_hex(16))

    @classmethod
    def from_url(cls, db_url: str, **kwargs: Any) -> Accounts:
        return cls(t.engine_for(db_url), **kwargs)

    # -- users ---------------------------------------------------------------------------------
    @staticmethod
    def _user(row: Any) -> User:
        return User(row.username, row.display_name, row.role, bool(row.disabled), row.created_ns)

    def user_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.users)).scalar_one())

    def create_user(self, username: str, role: str, password: str, display_name: str = "") -> User:
        validate_username(username)
        validate_role(role)
        validate_password(password)
        now = self.clock()
        pw_hash = self.hasher.hash(password)
        with self.engine.begin() as conn:
            if conn.execute(select(t.users.c.username).where(t.users.c.username == username)).first():
                raise UserExists(f"用户已存在 (user {username!r} already exists)")
            conn.execute(
                insert(t.users).values(
                    username=username, display_name=display_name[:128], role=role, password_hash=pw_hash,
                    disabled=False, created_ns=now, updated_ns=now,
                )
            )
        return User(username, display_name[:128], role, False, now)

    def get_user(self, username: str) -> User:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.users).where(t.users.c.username == username)).first()
        if row is None:
            raise UnknownUser(f"用户不存在 (no user {username!r})")
        return self._user(row)

    def list_users(self) -> list[User]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.users).order_by(t.users.c.username)).all()
        return [self._user(r) for r in rows]

    def _update_user(self, username: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            q = update(t.users).where(t.users.c.username == username)
            res = conn.execute(q.values(updated_ns=self.clock(), **values))
            if res.rowcount == 0:
                raise UnknownUser(f"用户不存在 (no user {username!r})")
            if "password_hash" in values or values.get("disabled") or "role" in values:
                # Credentials changed: every page session of this user ends now.
                conn.execute(t.page_sessions.delete().where(t.page_sessions.c.username == username))

    def set_password(self, username: str, password: str) -> int:
        """New password: every page session and every API token of the user ends. Returns how
        many API tokens were revoked (a reset after a compromise must not leave the thief's)."""
        validate_password(password)
        self._update_user(username, password_hash=self.hasher.hash(password))
        q = update(t.api_tokens).where(t.api_tokens.c.username == username, t.api_tokens.c.revoked_ns.is_(None))
        with self.engine.begin() as conn:
            return int(conn.execute(q.values(revoked_ns=self.clock())).rowcount)

    def set_role(self, username: str, role: str) -> tuple[str, str]:
        validate_role(role)
        old = self.get_user(username).role
        self._update_user(username, role=role)
        return old, role

    def set_disabled(self, username: str, disabled: bool) -> None:
        self._update_user(username, disabled=disabled)

    def set_display_name(self, username: str, display_name: str) -> None:
        self._update_user(username, display_name=display_name[:128])

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password is right and the account enabled; None otherwise.

        A missing user costs the same argon2 verification as a wrong password, so response
        times do not reveal which user names exist.
        """
        with self.engine.connect() as conn:
            row = conn.execute(select(t.users).where(t.users.c.username == username)).first()
        stored = row.password_hash if row is not None else self._dummy_hash
        try:
            self.hasher.verify(stored, password)
            ok = row is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or row is None or row.disabled:
            return None
        if self.hasher.check_needs_rehash(stored):
            self._update_user(username, password_hash=self.hasher.hash(password))
        return self._user(row)

    # -- page sessions (cookies) ---------------------------------------------------------------
    def _new_page_session(self, *, username: str | None, invitation_id: str | None, hard_ns: int) -> str:
        token = "tls_" + secrets.token_urlsafe(32)
        now = self.clock()
        with self.engine.begin() as conn:
            conn.execute(
                insert(t.page_sessions).values(
                    id_hash=_sha(token), username=username, invitation_id=invitation_id, created_ns=now,
                    expires_ns=min(now + self.session_idle_ns, hard_ns), hard_expires_ns=hard_ns,
                )
            )
        return token

    def start_page_session(self, username: str) -> str:
        """A new cookie value for a logged-in user."""
        return self._new_page_session(
            username=username, invitation_id=None, hard_ns=self.clock() + self.session_max_ns
        )

    def end_page_session(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(t.page_sessions.delete().where(t.page_sessions.c.id_hash == _sha(token)))

    def resolve_session_token(self, token: str) -> Principal | None:
        if not token.startswith("tls_"):
            return None
        now = self.clock()
        with self.engine.connect() as conn:
            q = select(t.page_sessions).where(t.page_sessions.c.id_hash == _sha(token))
            row = conn.execute(q).first()
        if row is None or now >= row.expires_ns:
            return None
        principal: Principal | None
        if row.invitation_id is not None:
            inv = self._invitation_by_id(row.invitation_id)
            principal = inv.principal() if inv is not None and inv.state(now) == "active" else None
        else:
            try:
                user = self.get_user(row.username)
            except UnknownUser:
                return None
            principal = None if user.disabled else user.principal()
        if principal is not None:
            new_expiry = min(now + self.session_idle_ns, row.hard_expires_ns)
            if new_expiry - row.expires_ns > 60 * 10**9:  # slide at most once a minute
                with self.engine.begin() as conn:
                    conn.execute(
                        update(t.page_sessions)
                        .where(t.page_sessions.c.id_hash == row.id_hash)
                        .values(expires_ns=new_expiry)
                    )
        return principal

    def resolve_cookie(self, request: Request) -> Principal | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        if request.method not in _SAFE_METHODS and not same_origin(request):
            return None  # a cross-site form post never rides on the cookie
        return self.resolve_session_token(token)

    # -- API tokens (Bearer) -------------------------------------------------------------------
    def issue_api_token(
        self, username: str, label: str = "", ttl_s: int | None = None
    ) -> tuple[ApiToken, str]:
        user = self.get_user(username)
        token = "tlk_" + secrets.token_urlsafe(32)
        now = self.clock()
        rec = ApiToken(secrets.token_hex(8), user.username, label[:128], now,
                       now + (ttl_s or self.api_token_ttl_s) * 10**9, None)
        with self.engine.begin() as conn:
            conn.execute(
                insert(t.api_tokens).values(
                    id=rec.id, token_hash=_sha(token), username=rec.username, label=rec.label,
                    created_ns=rec.created_ns, expires_ns=rec.expires_ns, revoked_ns=None,
                )
            )
        return rec, token

    def list_api_tokens(self, username: str | None = None) -> list[ApiToken]:
        q = select(t.api_tokens).order_by(t.api_tokens.c.created_ns)
        if username is not None:
            q = q.where(t.api_tokens.c.username == username)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [ApiToken(r.id, r.username, r.label, r.created_ns, r.expires_ns, r.revoked_ns) for r in rows]

    def revoke_api_token(self, token_id: str, username: str | None = None) -> bool:
        q = update(t.api_tokens).where(t.api_tokens.c.id == token_id, t.api_tokens.c.revoked_ns.is_(None))
        if username is not None:
            q = q.where(t.api_tokens.c.username == username)
        with self.engine.begin() as conn:
            return bool(conn.execute(q.values(revoked_ns=self.clock())).rowcount)

    def resolve_bearer(self, token: str) -> Principal | None:
        if token.startswith("tli_"):
            inv = self.invitation_for_token(token)
            return inv.principal() if inv is not None and inv.state(self.clock()) == "active" else None
        if not token.startswith("tlk_"):
            return None
        now = self.clock()
        with self.engine.connect() as conn:
            row = conn.execute(select(t.api_tokens).where(t.api_tokens.c.token_hash == _sha(token))).first()
        if row is None or row.revoked_ns is not None:
            return None
        # tokens issued before expiry became the default expire like new ones
        expires_ns = row.expires_ns if row.expires_ns is not None else row.created_ns + self.api_token_ttl_s * 10**9
        if now >= expires_ns:
            return None
        try:
            user = self.get_user(row.username)
        except UnknownUser:
            return None
        return None if user.disabled else user.principal()

    # -- invitations ---------------------------------------------------------------------------
    @staticmethod
    def _invitation(row: Any) -> Invitation:
        return Invitation(row.id, row.session_id, row.name, row.sub_role, row.source, row.created_by,
                          row.created_ns, row.expires_ns, row.revoked_ns, row.revoked_by)

    def create_invitation(
        self, session_id: str, name: str, sub_role: str, created_by: str, ttl_s: int
    ) -> tuple[Invitation, str]:
        safe_id(session_id, "session id")
        if sub_role not in SUB_ROLES:
            raise InvitationError(
                f"未知参与人身份 (unknown participant role {sub_role!r}; one of {', '.join(SUB_ROLES)})"
            )
        if not name.strip():
            raise InvitationError("参与人姓名为空 (participant name is empty)")
        if not 60 <= ttl_s <= 7 * 86400:
            raise InvitationError("有效期须在 1 分钟到 7 天之间 (ttl_s must be between 60 and 604800)")
        inv_id = secrets.token_hex(4)
        token = "tli_" + secrets.token_urlsafe(32)
        now = self.clock()
        inv = Invitation(inv_id, session_id, name.strip()[:128], sub_role, f"remote-{inv_id}", created_by,
                         now, now + ttl_s * 10**9, None, None)
        with self.engine.begin() as conn:
            conn.execute(
                insert(t.invitations).values(
                    id=inv.id, token_hash=_sha(token), session_id=inv.session_id, name=inv.name,
                    sub_role=inv.sub_role, source=inv.source, created_by=created_by, created_ns=now,
                    expires_ns=inv.expires_ns, revoked_ns=None, revoked_by=None,
                )
            )
        return inv, token

    def _invitation_by_id(self, inv_id: str) -> Invitation | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.invitations).where(t.invitations.c.id == inv_id)).first()
        return None if row is None else self._invitation(row)

    def get_invitation(self, inv_id: str) -> Invitation:
        inv = self._invitation_by_id(inv_id)
        if inv is None:
            raise InvitationError(f"邀请不存在 (no invitation {inv_id!r})")
        return inv

    def invitation_for_token(self, token: str) -> Invitation | None:
        if not token.startswith("tli_"):
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(t.invitations).where(t.invitations.c.token_hash == _sha(token))).first()
        return None if row is None else self._invitation(row)

    def list_invitations(self, session_id: str) -> list[Invitation]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.invitations).where(t.invitations.c.session_id == session_id)
                .order_by(t.invitations.c.created_ns)
            ).all()
        return [self._invitation(r) for r in rows]

    def revoke_invitation(self, inv_id: str, by: str) -> Invitation:
        with self.engine.begin() as conn:
            conn.execute(
                update(t.invitations)
                .where(t.invitations.c.id == inv_id, t.invitations.c.revoked_ns.is_(None))
                .values(revoked_ns=self.clock(), revoked_by=by)
            )
            conn.execute(t.page_sessions.delete().where(t.page_sessions.c.invitation_id == inv_id))
        return self.get_invitation(inv_id)

    def redeem_invitation(self, token: str) -> tuple[Invitation, str]:
        """Exchange an invitation link's token for a page session cookie bound to it."""
        inv = self.invitation_for_token(token)
        if inv is None:
            raise InvitationError("邀请链接无效 (unknown invitation)")
        state = inv.state(self.clock())
        if state == "revoked":
            raise InvitationError("邀请已被撤销 (invitation revoked)")
        if state == "expired":
            raise InvitationError("邀请已过期 (invitation expired)")
        return inv, self._new_page_session(username=None, invitation_id=inv.id, hard_ns=inv.expires_ns)


def same_origin(request: Request) -> bool:
    """False when a browser says the request comes from another site (Origin or Referer)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return True  # non-browser clients send neither; SameSite=Lax covers old browsers
    host = request.headers.get("host", "")
    rest = origin.split("://", 1)[-1]
    return rest.split("/", 1)[0] == host


def ensure_initial_admin(
    accounts: Accounts, data_dir: Path, echo: Callable[[str], None] = print
) -> str | None:
    """On first start (no user at all) create `admin` with a random password.

    The password is printed once and written to `data_dir/initial-admin.txt` (mode 0600). Returns
    it, or None when users already exist. `tonglu up` calls this.
    """
    if accounts.user_count() > 0:
        return None
    password = secrets.token_urlsafe(15)
    accounts.create_user("admin", "admin", password, display_name="管理员 Administrator")
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "initial-admin.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"user: admin\npassword: {password}\n")
    os.chmod(path, 0o600)
    echo(
        "==> 已创建初始管理员 initial admin created: user 'admin', password "
        f"{password}  (also in {path}; change it after the first login)"
    )
    return password
