"""The dashboard's credentials (tokens, basic-auth users, roles, CSRF) and
its live feed lines, which carry producers' text into HTML."""

from __future__ import annotations

import base64

import pytest

from stem import ErrorInfo
from stem._signals import TaskEvent
from stem.dashboard import DashboardAuth
from stem.dashboard._hub import feed_line


def _basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {raw}"}


def test_tokens_and_users_map_to_roles() -> None:
    """Admin and read-only tokens and basic-auth users are recognised with
    their role; anything else, or a malformed header, is nobody."""
    auth = DashboardAuth(
        admin_tokens=("a" * 20,),
        read_tokens=("r" * 20,),
        users={"ops": ("pw1", "admin"), "viewer": ("pw2", "read")},
    )
    admin = auth.authenticate({"authorization": "Bearer " + "a" * 20}, {})
    reader = auth.authenticate({}, {"stem_dashboard": "r" * 20})
    assert admin is not None and admin.can_act and admin.who == "admin-token-1"
    assert reader is not None and not reader.can_act
    ops = auth.authenticate(_basic("ops", "pw1"), {})
    viewer = auth.authenticate(_basic("viewer", "pw2"), {})
    assert ops is not None and ops.can_act and ops.who == "user ops"
    assert viewer is not None and not viewer.can_act
    for headers in (
        _basic("ops", "wrong"),
        _basic("nobody", "pw1"),
        {"authorization": "Basic !!!"},
        {"authorization": "Bearer " + "b" * 20},
        {"authorization": "Digest x"},
        {},
    ):
        assert auth.authenticate(headers, {}) is None


def test_csrf_tokens_are_tied_to_the_credential_and_the_process() -> None:
    """A CSRF token is valid only for the credential it was made for, and
    only under the secret of the dashboard process that made it."""
    auth = DashboardAuth(admin_tokens=("a" * 20, "c" * 20))
    one = auth.token_principal("a" * 20)
    two = auth.token_principal("c" * 20)
    assert one is not None and two is not None
    assert auth.csrf_ok(one, auth.csrf_token(one))
    assert not auth.csrf_ok(one, auth.csrf_token(two))
    assert not auth.csrf_ok(one, None)
    other = DashboardAuth(admin_tokens=("a" * 20,))
    assert not other.csrf_ok(one, auth.csrf_token(one))


def test_a_user_role_must_be_admin_or_read() -> None:
    with pytest.raises(ValueError, match="role"):
        DashboardAuth(users={"x": ("pw", "root")})


def test_feed_lines_escape_producer_text() -> None:
    """An event's id, name and error message reach the page escaped, on one
    line (one SSE data field)."""
    event = TaskEvent(
        signal="task_failed",
        at=1.0,
        task_id='t"><script>alert(1)</script>',
        name="n",
        queue="q",
        attempt=1,
        error=ErrorInfo(type="E", message="<img src=x onerror=alert(1)>\nline 2"),
    )
    line = feed_line(event, "")
    assert "<script>" not in line and "<img" not in line
    assert "&lt;img src=x onerror=alert(1)&gt; line 2" in line
    assert "\n" not in line
