"""Worker options, declared once in stem.WorkerConfig, and the leases a
worker holds (renewed without the BrokerActor)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
import trio

import stem
from stem._workerconfig import option_specs
from stem.actors._leases import HeldDeliveries
from stem.adapters.memory import open_backend


def test_prefetch_minus_one_means_as_many_as_the_slots() -> None:
    """prefetch=-1 is resolved in one place: the worker's adaptive depth, or
    as many as the slots without one; a fixed prefetch ignores the depth."""
    cfg = stem.WorkerConfig(concurrency=4)
    assert cfg.capacity == 8
    assert cfg.capacity_for(2) == 4
    assert cfg.capacity_for(2, adaptive=40) == 42
    assert stem.WorkerConfig(prefetch=3).capacity_for(2, adaptive=40) == 5
    assert stem.WorkerConfig(concurrency=4, prefetch=0).capacity == 4
    assert stem.WorkerConfig(concurrency=4, prefetch=50).capacity_for(1) == 51


def test_bad_options_are_refused_at_construction() -> None:
    """Invalid values raise when the record is built, naming the field."""
    with pytest.raises(ValueError, match="concurrency"):
        stem.WorkerConfig(concurrency=0)
    with pytest.raises(ValueError, match="prefetch"):
        stem.WorkerConfig(prefetch=-2)
    with pytest.raises(ValueError, match="claim_wait"):
        stem.WorkerConfig(claim_wait=0)
    with pytest.raises(ValueError, match="autoscale"):
        stem.WorkerConfig(autoscale=(3, 2))
    with pytest.raises(ValueError, match="queue"):
        stem.WorkerConfig(queues=[])
    assert stem.WorkerConfig(grace_period=timedelta(minutes=1)).grace_period == 60.0
    assert stem.WorkerConfig(autoscale=(2, 6)).concurrency == 6


def test_the_environment_sets_every_field_with_a_variable() -> None:
    """from_env reads STEM_* for each option that has a variable; bad text
    raises ConfigError naming the variable."""
    cfg = stem.WorkerConfig.from_env(
        {
            "STEM_QUEUES": "high, low",
            "STEM_CONCURRENCY": "3",
            "STEM_PREFETCH": "7",
            "STEM_GRACE_PERIOD": "2.5",
            "STEM_AUTOSCALE": "1,3",
        }
    )
    assert cfg.queues == ("high", "low")
    assert (cfg.prefetch, cfg.grace_period, cfg.autoscale) == (7, 2.5, (1, 3))
    assert cfg.concurrency == 3
    with pytest.raises(stem.ConfigError, match="STEM_PREFETCH"):
        stem.WorkerConfig.from_env({"STEM_PREFETCH": "many"})
    with pytest.raises(stem.ConfigError, match="STEM_QUEUES"):
        stem.WorkerConfig.from_env({"STEM_QUEUES": "bad queue!"})
    settings = stem.Settings.from_env({"STEM_CONCURRENCY": "5"})
    assert settings.worker.concurrency == settings.concurrency == 5


def test_every_flag_of_stem_worker_comes_from_the_record() -> None:
    """`stem worker --help` shows each WorkerConfig flag with its variable."""
    out = subprocess.run(
        [sys.executable, "-m", "stem.cli", "worker", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for spec in option_specs().values():
        assert spec.flags[0] in out
        assert spec.env is not None and spec.env in out


def test_a_bad_flag_value_is_one_line() -> None:
    """`stem worker --prefetch many` exits 2 with one line naming the flag."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stem.cli",
            "worker",
            "--app",
            "tests.cli_app:app",
            "--url",
            "memory://",
            "--prefetch",
            "many",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "--prefetch" in proc.stderr


async def test_client_worker_takes_the_record_and_keywords(autojump_clock: Any) -> None:
    """client.worker(config=..., **options): keywords win over the record."""
    async with stem.Client.in_memory() as client:
        base = stem.WorkerConfig(concurrency=2, queues=["a"], worker_id="w")
        async with client.worker(config=base, prefetch=1) as worker:
            assert worker.config.concurrency == 2
            assert worker.config.queues == ("a",)
            assert worker.config.prefetch == 1
        with pytest.raises(TypeError):
            async with client.worker(no_such_option=1):
                pass


async def test_leases_are_renewed_by_the_holder_alone(autojump_clock: Any) -> None:
    """HeldDeliveries renews leases straight on the backend (no BrokerActor):
    a held delivery is never claimable by another consumer while renewed, and
    is once its holder stops renewing."""
    async with open_backend("memory://") as backend:
        env = stem.Client.in_memory().build_envelope("x", {}, queue="q")
        await backend.broker.publish([env])
        got = await backend.broker.claim(["q"], limit=1, lease=3.0, consumer="a")
        held = HeldDeliveries(backend.broker, 3.0)
        held.add(got, 3.0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(held.renew_forever, lambda: None)
            await trio.sleep(30.0)
            other = await backend.broker.claim(["q"], limit=1, lease=3.0, consumer="b")
            assert other == []
            nursery.cancel_scope.cancel()
        await trio.sleep(5.0)
        again = await backend.broker.claim(["q"], limit=1, lease=3.0, consumer="b")
        assert [d.task_id for d in again] == [env.id]


async def test_a_refused_renewal_of_a_settling_delivery_is_no_lost_lease(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The renewer keeps renewing a delivery whose ack is on its way; when
    the ack lands first the refusal is expected and logs no lost lease. A
    refusal for a delivery nobody settled still warns."""
    async with open_backend("memory://") as backend:
        client = stem.Client.in_memory()
        envs = [client.build_envelope("x", {}, queue="q") for _ in range(2)]
        await backend.broker.publish(envs)
        got = await backend.broker.claim(["q"], limit=2, lease=3.0, consumer="a")
        acked, lost = sorted(got, key=lambda d: d.task_id != envs[0].id)
        held = HeldDeliveries(backend.broker, 3.0)
        held.add(got, 3.0)
        settling = {acked.receipt}
        await backend.broker.ack([acked])
        # The other one's lease runs out and another consumer takes it over.
        await trio.sleep(3.5)
        taken = await backend.broker.claim(["q"], limit=1, lease=30.0, consumer="b")
        assert [d.task_id for d in taken] == [lost.task_id]
        with caplog.at_level("WARNING", logger="stem.worker"):
            with trio.move_on_after(1.0):
                await held.renew_forever(lambda: None, settling)
        warned = [r.getMessage() for r in caplog.records if "lease" in r.getMessage()]
        assert warned == [
            f"lost the lease of {lost.task_id!r}; it may run again elsewhere"
        ]
