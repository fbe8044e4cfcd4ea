"""Contract checks for hostile input: whatever a foreign producer writes into
a queue, a claim hands it out (undecodable, with the reason) instead of
failing, and the dead-letter queue keeps every entry under its own entry id.

Same conventions as :mod:`stem.testing._checks_broker`.
"""

from __future__ import annotations

import json

import stem
from stem import ErrorInfo
from stem.contracts import DeadLetter, Delivery

from ._harness import Harness

LEASE = 2.0

#: Bodies a buggy or hostile producer may write; none is a valid envelope.
POISON_BODIES: tuple[tuple[str, bytes], ...] = (
    ("not JSON", b"{broken"),
    ("not UTF-8", b"\xff\xfe\x00garbage"),
    ("empty", b""),
    ("a JSON array", b"[1, 2, 3]"),
    ("nested 3,000 levels", b"[" * 3000 + b"]" * 3000),
    ("NaN in args", b'{"id": "p-nan", "name": "t", "args": {"x": NaN}}'),
    ("Infinity in args", b'{"id": "p-inf", "name": "t", "args": {"x": 1e999}}'),
    ("priority 2**15", b'{"id": "p-prio", "name": "t", "priority": 32768}'),
    (
        "unique_key an object",
        b'{"id": "p-uk", "name": "t", "meta": {"unique_key": {}}}',
    ),
    (
        "bogus canvas frame",
        b'{"id": "p-cv", "name": "t", "meta": {"canvas": {"stack": [{"k": "chord"}]}}}',
    ),
    ("args a string", b'{"id": "p-args", "name": "t", "args": "x"}'),
    ("header not a string", b'{"id": "p-hdr", "name": "t", "headers": {"a": 1}}'),
    ("huge integer", b'{"id": "p-int", "name": "t", "attempt": 1' + b"0" * 5000 + b"}"),
    ("not_before out of range", b'{"id": "p-nb", "name": "t", "not_before": 1e300}'),
)


def _entry(d: Delivery, reason: str = "decode-error") -> DeadLetter:
    env = d.envelope
    return DeadLetter(
        task_id=d.task_id,
        name=env.name if env else "",
        queue=d.queue,
        reason=reason,
        error=ErrorInfo(type="stem.DecodeError", message=d.decode_error or "bad"),
        attempts=env.attempt if env else d.delivery_count,
        dead_at=stem.now(),
        envelope=env,
        raw=d.raw,
    )


async def _claim_all(h: Harness) -> list[Delivery]:
    return list(
        await h.broker.claim(
            ["default"], limit=100, lease=LEASE, consumer="hostile", wait=0.0
        )
    )


async def check_claim_hands_out_poison(h: Harness) -> None:
    """Every kind of poison body is claimed as an undecodable delivery with
    its reason, its size and its bytes, and a good message behind the poison
    is claimed with it."""
    for _, body in POISON_BODIES:
        await h.broker.publish_raw("default", body)
    good = h.envelope()
    await h.broker.publish([good])
    got = await _claim_all(h)
    assert len(got) == len(POISON_BODIES) + 1
    by_body = {d.raw: d for d in got if d.envelope is None}
    for label, body in POISON_BODIES:
        d = by_body.get(body[:65536])
        assert d is not None, f"the poison body ({label}) was not handed out as is"
        assert d.decode_error, f"no decode_error for the poison body ({label})"
        assert d.size in (0, len(body)), f"wrong size for the poison body ({label})"
    [ok] = [d for d in got if d.envelope is not None]
    assert ok.envelope == good
    for d in got:
        if d.envelope is None:
            assert await h.broker.dead_letter(d, _entry(d)) is True
        else:
            await h.broker.ack([d])
    assert len(await h.broker.list_dead("default")) == len(POISON_BODIES)


async def check_dead_letters_keep_every_entry(h: Harness) -> None:
    """Three undecodable messages without a task id leave three dead-letter
    entries, each with its own entry id."""
    for n in range(3):
        await h.broker.publish_raw("default", b"{broken %d" % n)
    got = await _claim_all(h)
    assert [d.task_id for d in got] == ["", "", ""]
    for d in got:
        assert await h.broker.dead_letter(d, _entry(d)) is True
        await h.advance(0.1)
    entries = await h.broker.list_dead("default")
    assert len(entries) == 3
    ids = [e.entry_id for e in entries]
    assert all(ids), "a stored entry has no entry_id"
    assert len(set(ids)) == 3, f"entry ids collide: {ids}"
    assert [e.raw for e in entries] == [d.raw for d in got]
    assert (await h.broker.stats("default")).dead == 3
    assert await h.broker.purge_dead("default", limit=2) == 2
    [last] = await h.broker.list_dead("default")
    assert last.entry_id == ids[2]


async def check_dead_letter_forged_id_keeps_the_real_entry(h: Harness) -> None:
    """A poison message forging a dead task's id adds an entry instead of
    overwriting the real one: get_dead returns the newest, and a replay by
    task id puts the real (decodable) one back."""
    real = h.envelope()
    await h.broker.publish([real])
    [d] = await _claim_all(h)
    assert await h.broker.dead_letter(d, _entry(d, "max-retries-exhausted")) is True
    await h.advance(0.5)
    forged = json.dumps({"id": real.id, "name": 42}).encode()
    await h.broker.publish_raw("default", forged)
    [p] = await _claim_all(h)
    assert p.envelope is None
    assert p.task_id == real.id
    assert await h.broker.dead_letter(p, _entry(p)) is True
    entries = await h.broker.list_dead("default")
    assert [e.reason for e in entries] == ["max-retries-exhausted", "decode-error"]
    assert entries[0].envelope == real
    newest = await h.broker.get_dead("default", real.id)
    assert newest is not None
    assert newest.entry_id == entries[1].entry_id
    assert await h.broker.replay_dead("default", task_ids=[real.id]) == [real.id]
    [left] = await h.broker.list_dead("default")
    assert left.entry_id == entries[1].entry_id
    [again] = await _claim_all(h)
    assert again.envelope is not None
    assert again.envelope.id == real.id
    assert again.envelope.attempt == 1


async def check_replay_dead_one_message_per_task_id(h: Harness) -> None:
    """Two decodable entries with one task id replay as one message (the
    newest); the older entry stays."""
    env = h.envelope()
    for attempt in (1, 2):
        await h.broker.publish([env])
        [d] = await _claim_all(h)
        assert await h.broker.dead_letter(d, _entry(d, f"reason-{attempt}")) is True
        await h.advance(0.5)
    first, second = await h.broker.list_dead("default")
    assert await h.broker.replay_dead("default") == [env.id]
    [left] = await h.broker.list_dead("default")
    assert left.entry_id == first.entry_id
    got = await _claim_all(h)
    assert [d.task_id for d in got] == [env.id]
    assert second.reason == "reason-2"
