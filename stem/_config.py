"""Configuration from the environment (read only at the edge: ``stem.main``
and the CLI) and loading the app named by ``STEM_APP``."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from typing import Any

import attrs

from ._app import App
from ._errors import ConfigError
from ._handler import TaskHandler
from ._signing import Signing
from ._workerconfig import WorkerConfig, parse_option


@attrs.frozen(kw_only=True)
class Settings:
    """What ``stem.main`` runs. Every field has an environment variable; the
    worker's own options are one :class:`WorkerConfig` (``STEM_QUEUES``,
    ``STEM_CONCURRENCY``, ``STEM_PREFETCH``, ``STEM_GRACE_PERIOD``,
    ``STEM_AUTOSCALE``: see ``stem._workerconfig``)."""

    app: str | None = None  # STEM_APP: "pkg.module:app"
    broker_url: str = "sqlite:///stem.db"  # STEM_BROKER_URL
    worker: WorkerConfig = attrs.field(factory=WorkerConfig)
    beat: str = "auto"  # STEM_BEAT: "auto" (when the app has schedules), "on", "off"
    metrics_port: int | None = None  # STEM_METRICS_PORT

    # Read-only views of the worker options most often asked for.
    @property
    def queues(self) -> tuple[str, ...]:
        return self.worker.queues

    @property
    def concurrency(self) -> int:
        return self.worker.concurrency

    @property
    def prefetch(self) -> int:
        return self.worker.prefetch

    @property
    def grace_period(self) -> float:
        return self.worker.grace_period

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        kw: dict[str, Any] = {"worker": WorkerConfig.from_env(env)}
        if env.get("STEM_APP"):
            kw["app"] = env["STEM_APP"]
        if env.get("STEM_BROKER_URL"):
            kw["broker_url"] = env["STEM_BROKER_URL"]
        if env.get("STEM_BEAT"):
            beat = env["STEM_BEAT"].lower()
            if beat not in ("auto", "on", "off"):
                raise ConfigError(f"STEM_BEAT must be auto, on or off, got {beat!r}")
            kw["beat"] = beat
        if env.get("STEM_METRICS_PORT"):
            port = env["STEM_METRICS_PORT"]
            if not port.isdigit() or int(port) > 65535:
                raise ConfigError(
                    f"STEM_METRICS_PORT must be a port from 0 to 65535 "
                    f"(0 picks a free one), got {port!r}"
                )
            kw["metrics_port"] = int(port)
        return cls(**kw)


def with_env_signing(
    app: App | None, environ: Mapping[str, str] | None = None
) -> App | None:
    """``app`` signing with the keys of ``STEM_SIGNING_KEYS`` (and
    ``STEM_SIGNING_ACTIVE``, ``STEM_REQUIRE_SIGNED``) when that is set: the
    environment wins over the app's own ``signing=``. Without an app, an app
    with no tasks that signs (for the CLI's control commands). ConfigError
    naming the variable when one is malformed."""
    signing = Signing.from_env(os.environ if environ is None else environ)
    if signing is None:
        return app
    return (app or App()).with_signing(signing)


def parse_queues(text: str, *, var: str = "queues") -> tuple[str, ...]:
    """Comma-separated queue names; ConfigError naming ``var`` if bad."""
    return tuple(parse_option("queues", text, source=var))


def load_app(spec: str | None, *, var: str = "STEM_APP") -> App:
    """Import ``"pkg.module:attr"`` and return it as an App.

    The attribute may be an App, a list of tasks, or a zero-argument factory
    returning either. Errors name the variable and the import that failed.
    """
    if not spec:
        raise ConfigError(
            f"{var} is not set: set it to 'pkg.module:app' (an App or a list of tasks)"
        )
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{var}={spec!r} must have the form 'pkg.module:app'")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"{var}={spec!r}: cannot import module {module_name!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    try:
        target: Any = module
        for part in attr.split("."):
            target = getattr(target, part)
    except AttributeError:
        raise ConfigError(
            f"{var}={spec!r}: module {module_name!r} has no attribute {attr!r}"
        ) from None
    if (
        callable(target)
        and not isinstance(target, App | TaskHandler)
        and not isinstance(target, type)
    ):
        try:
            target = target()
        except Exception as exc:
            raise ConfigError(
                f"{var}={spec!r}: calling {attr}() failed: {exc}"
            ) from exc
    if isinstance(target, App):
        return target
    if isinstance(target, list | tuple):
        try:
            return App(target)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{var}={spec!r}: {exc}") from exc
    raise ConfigError(
        f"{var}={spec!r} names a {type(target).__name__}, "
        "expected a stem.App or a list of tasks"
    )
