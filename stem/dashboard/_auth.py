"""Who may see the dashboard and who may act on it.

Authentication is on unless explicitly turned off: an admin token (one is
generated when none is configured), optional read-only tokens, and optional
HTTP basic-auth users with a role. A browser signs in once at
``/login?token=...`` (or with the login form); the token then travels in an
HttpOnly, SameSite=Strict cookie. Every action (a POST) needs the admin role
and a CSRF token tied to the credential (an HMAC under a per-process
secret), and a request whose ``Origin`` names another host is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping

import attrs

#: The roles: ``admin`` sees and acts, ``read`` only sees.
ADMIN = "admin"
READ = "read"
#: The cookie that carries the token after a login.
COOKIE = "stem_dashboard"


@attrs.frozen(kw_only=True)
class Principal:
    """An authenticated caller: ``who`` names it in the action log (never
    the token itself)."""

    who: str
    role: str
    credential: str

    @property
    def can_act(self) -> bool:
        return self.role == ADMIN


def _check_role(_: object, __: object, users: Mapping[str, tuple[str, str]]) -> None:
    for user, (_password, role) in users.items():
        if role not in (ADMIN, READ):
            raise ValueError(f"user {user!r}: role must be admin or read, got {role!r}")


@attrs.frozen(kw_only=True)
class DashboardAuth:
    """The dashboard's credentials. ``disabled=True`` lets anyone in as
    admin (only for a dashboard bound to a trusted interface)."""

    admin_tokens: tuple[str, ...] = ()
    read_tokens: tuple[str, ...] = ()
    #: basic-auth users: name -> (password, role)
    users: Mapping[str, tuple[str, str]] = attrs.field(
        factory=dict, validator=_check_role
    )
    disabled: bool = False
    secret: bytes = attrs.field(factory=lambda: secrets.token_bytes(32))

    @classmethod
    def generated(cls) -> tuple[DashboardAuth, str]:
        """Auth with a fresh admin token (returned, to print once)."""
        token = secrets.token_urlsafe(24)
        return cls(admin_tokens=(token,)), token

    @property
    def basic(self) -> bool:
        return bool(self.users)

    def token_principal(self, token: str) -> Principal | None:
        """The principal a token names (constant-time comparisons)."""
        for role, tokens in ((ADMIN, self.admin_tokens), (READ, self.read_tokens)):
            for n, known in enumerate(tokens):
                if hmac.compare_digest(token.encode(), known.encode()):
                    return Principal(
                        who=f"{role}-token-{n + 1}", role=role, credential=token
                    )
        return None

    def authenticate(
        self, headers: Mapping[str, str], cookies: Mapping[str, str]
    ) -> Principal | None:
        """The caller of a request: a Bearer token, the login cookie or
        basic auth; None when it has none that is valid."""
        if self.disabled:
            return Principal(who="anonymous", role=ADMIN, credential="")
        header = headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value:
            return self.token_principal(value.strip())
        if scheme.lower() == "basic" and value and self.users:
            return self._basic(value.strip())
        cookie = cookies.get(COOKIE)
        if cookie:
            return self.token_principal(cookie)
        return None

    def _basic(self, value: str) -> Principal | None:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        known = self.users.get(user)
        if not sep or known is None:
            return None
        if not hmac.compare_digest(password.encode(), known[0].encode()):
            return None
        return Principal(who=f"user {user}", role=known[1], credential=decoded)

    def csrf_token(self, principal: Principal) -> str:
        """The CSRF token of ``principal``'s session."""
        mac = hmac.new(self.secret, principal.credential.encode(), hashlib.sha256)
        return mac.hexdigest()[:40]

    def csrf_ok(self, principal: Principal, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(
            given.encode(), self.csrf_token(principal).encode()
        )
