"""Signed task messages end to end on every backend (memory, SQLite, and
throwaway Redis and PostgreSQL servers, skipped with the reason outside CI):
results, retries, chain and chord follow-ups, a workflow activity, a beat
fire and a dead-letter replay keep working with ``require_signed``, while
unsigned and tampered messages are dead-lettered ``signature-invalid`` and
never run."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio

import stem
from stem import WorkflowContext
from stem._signing import SIGNATURE_HEADER

BACKENDS = [
    "memory_backend_factory",
    "sqlite_backend_factory",
    "redis_backend_factory",
    "postgres_backend_factory",
]
OLD = stem.SigningKey.hmac("k-old", b"an old secret of 32 bytes, or so")
NEW = stem.SigningKey.hmac("k-new", b"the new secret that signs from now")
FAST_RETRY = stem.RetryPolicy(base=0.01, cap=0.05)


def make_app(
    calls: list[str], flags: dict[str, bool], signing: stem.Signing
) -> stem.App:
    @stem.task("sig.add1")
    async def add1(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        calls.append("add1")
        return int(ctx.previous_result or 0) + int(args.get("n", 1))

    @stem.task("sig.sum")
    async def total(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        calls.append("sum")
        return sum(ctx.previous_result)

    @stem.task("sig.flaky", max_retries=3, retry_policy=FAST_RETRY)
    async def flaky(ctx: stem.TaskContext, args: dict[str, Any]) -> int:
        calls.append(f"flaky{ctx.attempt}")
        if ctx.attempt < 3:
            raise RuntimeError("not yet")
        return ctx.attempt

    @stem.task("sig.gated")
    async def gated(ctx: stem.TaskContext, args: dict[str, Any]) -> str:
        calls.append("gated")
        if not flags.get("open"):
            raise RuntimeError("the gate is closed")
        return "through"

    @stem.task("sig.ticked")
    async def ticked(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        calls.append("ticked")

    async def order(wf: WorkflowContext) -> int:
        value: int = await wf.activity("sig.add1", args={"n": 41})
        return value + 1

    return stem.App(
        tasks=[add1, total, flaky, gated, ticked],
        workflows=[stem.WorkflowScript("sig.order", order)],
        schedules=[
            stem.ScheduleEntry("sig.tick", every=1, task=stem.signature("sig.ticked"))
        ],
        signing=signing,
    )


async def _dead(client: stem.Client, task_id: str) -> stem.DeadLetter:
    while True:
        entry = await client.backend.broker.get_dead("default", task_id)
        if entry is not None:
            return entry
        await trio.sleep(0.05)


@pytest.mark.parametrize("factory_name", BACKENDS)
async def test_signed_messages_work_and_forged_ones_never_run(
    request: pytest.FixtureRequest, factory_name: str
) -> None:
    """With require_signed on the worker, every path that publishes (enqueue,
    retry, chain and chord follow-ups, workflow activity, beat, dead-letter
    replay) is signed and runs; an unsigned and a tampered message are
    dead-lettered ``signature-invalid``, record no result and never run."""
    factory = request.getfixturevalue(factory_name)
    calls: list[str] = []
    flags: dict[str, bool] = {}
    # The producer signs with the new key; the worker accepts both.
    producer = stem.Signing(keys=[NEW])
    worker = stem.Signing(keys=[NEW, OLD], active="k-new", require_signed=True)
    sig = stem.signature
    async with factory() as backend:
        async with (
            stem.Client(backend=backend, app=make_app(calls, flags, producer)) as p,
            stem.Client(backend=backend, app=make_app(calls, flags, worker)) as w,
            w.worker(concurrency=4, claim_wait=0.2),
        ):
            with trio.fail_after(60):
                # Forged messages first: published straight into the broker.
                real = p.build_envelope("sig.add1", {"n": 1})
                assert real.headers[SIGNATURE_HEADER].startswith("hmac-sha256:k-new:")
                tampered = attrs.evolve(real, args={"n": 1000})
                unsigned = w.build_envelope("sig.add1", {"n": 2})
                unsigned = attrs.evolve(
                    unsigned,
                    id="unsigned-" + unsigned.id,
                    headers={},
                )
                await backend.broker.publish([tampered, unsigned])
                bad_tamper = await _dead(w, tampered.id)
                bad_unsigned = await _dead(w, unsigned.id)

                simple = await p.enqueue("sig.add1", {"n": 4})
                retried = await p.enqueue("sig.flaky")
                chain = await p.canvas.chain([sig("sig.add1")] * 3)
                chord = await p.canvas.chord(
                    [sig("sig.add1", {"n": i}) for i in range(4)],
                    callback=sig("sig.sum"),
                )
                run_id = await p.workflows.start("sig.order")
                gated = await p.enqueue("sig.gated")
                assert (await p.wait_for(simple, timeout=30)).value == 4
                flaky = await p.wait_for(retried, timeout=30)
                assert (flaky.state, flaky.value) == (stem.TaskState.SUCCEEDED, 3)
                assert await chain.get(timeout=30) == 3
                assert await chord.get(timeout=30) == 6
                assert (await p.workflows.wait(run_id, timeout=30)).result == 42
                failed = await p.wait_for(gated, timeout=30)
                assert failed.state == stem.TaskState.FAILED
                # Replayed from the dead letters, the message is still valid.
                flags["open"] = True
                assert await p.dead_letters("default").replay([gated]) == [gated]
                while (await p.get(gated)).state != stem.TaskState.SUCCEEDED:  # type: ignore[union-attr]
                    await trio.sleep(0.05)
                # A beat fire is signed by the node that runs beat.
                async with w.beat():
                    while "ticked" not in calls:
                        await trio.sleep(0.05)
            assert await w.get(tampered.id) is None
            assert await w.get(unsigned.id) is None
    for entry, problem in (
        (bad_tamper, "does not match"),
        (bad_unsigned, "not signed"),
    ):
        assert entry.reason == "signature-invalid"
        assert entry.error is not None
        assert entry.error.type == "stem.SignatureInvalid"
        assert problem in entry.error.message
    # 1 + 4 + 1+1+1 + 0+1+2+3 + 41 ran; 1000 and 2 (the forged args) never did.
    assert calls.count("add1") == 1 + 3 + 4 + 1
    assert calls.count("sum") == 1
    assert [c for c in calls if c.startswith("flaky")] == ["flaky1", "flaky2", "flaky3"]
    assert calls.count("gated") == 2


async def test_ed25519_producer_and_public_key_workers() -> None:
    """A producer signs with an Ed25519 private key; a worker holding only the
    public key runs its tasks and refuses one signed by an unknown key; the
    worker's own key pair signs the chain follow-ups it publishes."""
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    def raw_pair() -> tuple[bytes, bytes]:
        key = Ed25519PrivateKey.generate()
        return key.private_bytes_raw(), key.public_key().public_bytes_raw()

    producer_private, producer_public = raw_pair()
    worker_private, worker_public = raw_pair()
    stranger_private, _ = raw_pair()
    calls: list[str] = []
    producer = stem.Signing(
        keys=[stem.SigningKey.ed25519_private("producer", producer_private)]
    )
    worker = stem.Signing(
        keys=[
            stem.SigningKey.ed25519_private("worker-1", worker_private),
            stem.SigningKey.ed25519_public("producer", producer_public),
        ],
        require_signed=True,
    )
    stranger = stem.Signing(
        keys=[stem.SigningKey.ed25519_private("producer", stranger_private)]
    )
    assert stem.SigningKey.ed25519_public("w", worker_public).can_sign is False
    async with stem.Client.in_memory() as base:
        backend = base.backend
        async with (
            stem.Client(backend=backend, app=make_app(calls, {}, producer)) as p,
            stem.Client(backend=backend, app=make_app(calls, {}, stranger)) as s,
            stem.Client(backend=backend, app=make_app(calls, {}, worker)) as w,
            w.worker(concurrency=2, claim_wait=0.2),
        ):
            with trio.fail_after(30):
                forged = await s.enqueue("sig.add1", {"n": 99})
                chain = await p.canvas.chain([stem.signature("sig.add1")] * 2)
                assert await chain.get(timeout=20) == 2
                entry = await _dead(w, forged)
    assert entry.reason == "signature-invalid"
    assert calls.count("add1") == 2
