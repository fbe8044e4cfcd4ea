"""When a group (or chord) counter expires: the rule every ResultBackend
shares.

A group's expiry is set by each add to ``ttl`` seconds later, judged by the
client's clock (``stem.now()``), never the server's. After it, the group has
no members and a late member is refused with :class:`stem.GroupExpired`; the
store remembers the expiry for another ``ttl`` (its *forget* time), after
which the id may start a new group. Pure functions: the time is an argument.
"""

from __future__ import annotations

from typing import Literal

from ._errors import GroupExpired

Phase = Literal["live", "expired", "gone"]


def group_deadlines(at: float, ttl: float | None) -> tuple[float | None, float | None]:
    """(expires_at, forget_at) of a group added to at ``at`` with ``ttl``."""
    if ttl is None:
        return None, None
    return at + ttl, at + 2 * ttl


def group_phase(expires_at: float | None, forget_at: float | None, at: float) -> Phase:
    """``live`` (members count), ``expired`` (late members are refused) or
    ``gone`` (forgotten, or never stored: an add starts a new group)."""
    if forget_at is not None and forget_at <= at:
        return "gone"
    if expires_at is not None and expires_at <= at:
        return "expired"
    return "live"


def expired_error(group_id: str, expires_at: float | None, at: float) -> GroupExpired:
    """The refusal of a member of the expired group ``group_id``."""
    late = "" if expires_at is None else f" {at - expires_at:.3f} s ago"
    return GroupExpired(
        f"group {group_id!r} expired{late}: its members' results are gone, so "
        "a late member is not recorded"
    )
