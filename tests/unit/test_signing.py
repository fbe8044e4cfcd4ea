"""Signing keys, the bytes a signature covers, and STEM_SIGNING_KEYS
(stem._signing; pure, no backend)."""

from __future__ import annotations

import base64
import logging
from typing import Any

import attrs
import pytest

import stem
from stem._codec import decode_envelope, encode_envelope
from stem._redelivery import fresh_for_replay
from stem._signing import SIGNATURE_HEADER, Signing, SigningKey

SECRET = b"0123456789abcdef0123456789abcdef"
KEY = SigningKey.hmac("k1", SECRET)


def signed_env(signing: Signing | None = None, **call: Any) -> stem.Envelope:
    @stem.task("job")
    async def job(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        return None

    app = stem.App(tasks=[job], signing=signing or Signing(keys=[KEY]))
    client = stem.Client(app=app)
    return client.build_envelope("job", {"a": 1, "text": "naïve"}, **call)


def test_a_retry_a_replay_trace_headers_and_the_wire_keep_a_signature_valid() -> None:
    """What a retry, a hand-back, a dead-letter replay, a publisher's trace
    context and an encode/decode round trip change leaves the signature
    valid."""
    signing = Signing(keys=[KEY], require_signed=True)
    env = signed_env(signing, expires=60.0, meta={"workflow_run": "r1"})
    assert env.headers[SIGNATURE_HEADER].startswith("hmac-sha256:k1:")
    retried = env.next_attempt(not_before=env.enqueued_at + 5, error={"type": "E"})
    retried = retried.next_attempt(not_before=None, error={"type": "E"})
    replayed = fresh_for_replay(retried, queue="other", at=1e9, delay=3)
    traced = attrs.evolve(
        replayed,
        headers={
            **replayed.headers,
            "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
        },
        priority=7,
    )
    wire = decode_envelope(encode_envelope(traced))
    for candidate in (env, retried, replayed, traced, wire):
        assert signing.check_envelope(candidate) is None


@pytest.mark.parametrize(
    "change",
    [
        {"id": "another-id"},
        {"name": "other.task"},
        {"args": {"a": 2, "text": "naïve"}},
        {"max_retries": 9},
        {"expires": 1.0},
        {"meta": {"canvas": [{"k": "chain", "rest": []}]}},
        {"meta": {"workflow_run": "r2"}},
    ],
)
def test_changing_what_decides_execution_breaks_the_signature(
    change: dict[str, Any],
) -> None:
    """A change to the id, name, args, max_retries, expiry, meta or user
    headers makes the signature fail."""
    signing = Signing(keys=[KEY])
    env = signed_env(signing, meta={"workflow_run": "r1"})
    tampered = attrs.evolve(env, **change)
    assert "does not match" in (signing.check_envelope(tampered) or "")
    headers = {**env.headers, "tenant": "someone-else"}
    assert signing.check_envelope(attrs.evolve(env, headers=headers)) is not None


def test_unsigned_messages_pass_only_without_require_signed() -> None:
    """Unsigned is refused under require_signed and accepted without it; a
    bad signature, an unknown key or a garbled token is always refused."""
    env = signed_env()
    unsigned = attrs.evolve(env, headers={})
    lenient, strict = Signing(keys=[KEY]), Signing(keys=[KEY], require_signed=True)
    assert lenient.check_envelope(unsigned) is None
    assert strict.check_envelope(unsigned) == "the message is not signed"
    other = Signing(keys=[SigningKey.hmac("k2", SECRET)])
    assert "unknown key 'k1'" in (other.check_envelope(env) or "")
    for token in (
        "",
        "x",
        "hmac-sha256:k1:",
        "hmac-sha256:k1:!!!",
        "ed25519:k1:AAAA",
        5,
    ):
        bad = attrs.evolve(env, headers={SIGNATURE_HEADER: token})  # type: ignore[dict-item]
        assert lenient.check_envelope(bad) is not None


def test_rotation_accepts_every_key_and_signs_with_the_active_one() -> None:
    """Several keys verify at once; only the active one signs."""
    old, new = KEY, SigningKey.hmac("k2", b"another secret of enough bytes!!")
    before = Signing(keys=[old])
    during = Signing(keys=[old, new], active="k2")
    after = Signing(keys=[new])
    from_old = signed_env(before)
    from_new = signed_env(during)
    assert from_new.headers[SIGNATURE_HEADER].startswith("hmac-sha256:k2:")
    assert during.check_envelope(from_old) is None
    assert during.check_envelope(from_new) is None
    assert after.check_envelope(from_new) is None
    assert after.check_envelope(from_old) is not None


def test_bad_configuration_is_refused_with_a_clear_error() -> None:
    """Short secrets, bad ids, duplicate ids, an unknown or public active key
    are ConfigErrors; a key's repr never shows its secret."""
    with pytest.raises(stem.ConfigError, match="at least 16 bytes"):
        SigningKey.hmac("k", b"short")
    with pytest.raises(stem.ConfigError, match="key id"):
        SigningKey.hmac("bad id:", SECRET)
    with pytest.raises(stem.ConfigError, match="two signing keys"):
        Signing(keys=[KEY, KEY])
    with pytest.raises(stem.ConfigError, match="not among"):
        Signing(keys=[KEY], active="nope")
    with pytest.raises(stem.ConfigError, match="at least one key"):
        Signing(keys=[])
    assert SECRET.decode() not in repr(KEY)
    assert SECRET.decode() not in repr(Signing(keys=[KEY]))


def test_ed25519_keys_sign_and_public_keys_only_verify() -> None:
    """An Ed25519 private key signs, its public key verifies and cannot be
    the active key; PEM and raw forms are both read."""
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signer = Signing(keys=[SigningKey.ed25519_private("ed", pem)])
    env = signed_env(signer)
    assert env.headers[SIGNATURE_HEADER].startswith("ed25519:ed:")
    public = SigningKey.ed25519_public("ed", public_pem)
    verifier = Signing(keys=[public], require_signed=True)
    assert verifier.signing_key is None
    assert verifier.check_envelope(env) is None
    assert verifier.check_envelope(attrs.evolve(env, args={"a": 3})) is not None
    # the verifier signs nothing: what it builds goes out unsigned
    assert SIGNATURE_HEADER not in signed_env(verifier).headers
    with pytest.raises(stem.ConfigError, match="cannot sign"):
        Signing(keys=[public], active="ed")
    with pytest.raises(stem.ConfigError, match="signing key 'x'"):
        SigningKey.ed25519_public("x", b"too short")


def test_control_messages_are_signed_over_every_field() -> None:
    """A control message's signature covers every field but itself."""
    signing = Signing(keys=[KEY], require_signed=True)
    body = signing.sign_control({"kind": "stem.control", "command": "ping", "args": {}})
    assert signing.check_control(body) == (None, "k1")
    assert signing.check_control({**body, "command": "shutdown"})[0] is not None
    unsigned = {k: v for k, v in body.items() if k != "sig"}
    assert signing.check_control(unsigned)[0] == "the request is not signed"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_stem_signing_keys_from_the_environment() -> None:
    """STEM_SIGNING_KEYS lists id=secret items (HMAC by default, Ed25519 by
    kind); STEM_SIGNING_ACTIVE and STEM_REQUIRE_SIGNED set the policy;
    errors name the variable and never show a secret."""
    assert Signing.from_env({}) is None
    other = b"a second secret, thirty-two byte"
    signing = Signing.from_env(
        {
            "STEM_SIGNING_KEYS": f"k1={_b64(SECRET)}, k2=hmac:{_b64(other)}",
            "STEM_SIGNING_ACTIVE": "k2",
            "STEM_REQUIRE_SIGNED": "1",
        }
    )
    assert signing is not None
    assert signing.key_ids() == ["k1", "k2"]
    assert signing.signing_key is not None and signing.signing_key.id == "k2"
    assert signing.require_signed
    bad = [
        ({"STEM_SIGNING_KEYS": "k1"}, "must be 'id=secret'"),
        ({"STEM_SIGNING_KEYS": "k1=hmac:%%%"}, "not base64"),
        ({"STEM_SIGNING_KEYS": f"k1=rsa:{_b64(SECRET)}"}, "unknown key kind"),
        ({"STEM_SIGNING_KEYS": f"k1={_b64(b'short')}"}, "at least 16 bytes"),
        ({"STEM_REQUIRE_SIGNED": "1"}, "STEM_SIGNING_KEYS is not"),
        ({"STEM_REQUIRE_SIGNED": "maybe"}, "STEM_REQUIRE_SIGNED"),
        (
            {"STEM_SIGNING_KEYS": f"k1={_b64(SECRET)}", "STEM_SIGNING_ACTIVE": "k9"},
            "not among",
        ),
    ]
    for environ, message in bad:
        with pytest.raises(stem.ConfigError, match=message) as info:
            Signing.from_env(environ)
        assert _b64(SECRET) not in str(info.value)


def test_with_signing_copies_the_app_and_leaves_it_unchanged() -> None:
    """app.with_signing gives a copy with the same tasks, workflows,
    schedules, routes and signals that signs; the original stays unsigned."""

    @stem.task("copy.job")
    async def job(ctx: stem.TaskContext, args: dict[str, Any]) -> None:
        return None

    app = stem.App(tasks=[job], routes={"copy.*": "slow"}, name="mine")
    signing = Signing(keys=[KEY])
    copy = app.with_signing(signing)
    assert (copy.signing, app.signing) == (signing, None)
    assert copy.tasks == app.tasks and copy.routes == app.routes
    assert copy.signals is app.signals and copy.name == "mine"
    env = stem.Client(app=copy).build_envelope("copy.job")
    assert env.queue == "slow" and SIGNATURE_HEADER in env.headers
    with pytest.raises(TypeError, match="stem.Signing"):
        stem.App(signing="k1=secret")  # type: ignore[arg-type]


def test_ed25519_keys_from_the_environment() -> None:
    """STEM_SIGNING_KEYS reads Ed25519 keys as base64 of their 32 raw bytes:
    a producer's private key signs what a worker's public key verifies."""
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private, public = key.private_bytes_raw(), key.public_key().public_bytes_raw()
    producer = Signing.from_env(
        {"STEM_SIGNING_KEYS": f"web=ed25519-private:{_b64(private)}"}
    )
    worker = Signing.from_env(
        {
            "STEM_SIGNING_KEYS": f"web=ed25519-public:{_b64(public)}",
            "STEM_REQUIRE_SIGNED": "yes",
        }
    )
    assert producer is not None and worker is not None
    assert worker.signing_key is None and worker.require_signed
    env = signed_env(producer)
    assert worker.check_envelope(env) is None
    with pytest.raises(stem.ConfigError, match="STEM_SIGNING_KEYS: item 1"):
        Signing.from_env({"STEM_SIGNING_KEYS": f"web=ed25519-public:{_b64(b'x' * 5)}"})


def test_the_service_says_how_it_signs(caplog: pytest.LogCaptureFixture) -> None:
    """stem.main logs the key ids it signs and verifies with (never a
    secret), and warns when it holds no key that can sign."""
    from stem._main import _log_signing

    caplog.set_level(logging.INFO, logger="stem.main")
    _log_signing(stem.App(signing=Signing(keys=[KEY], require_signed=True)))
    _log_signing(stem.App())
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    public = SigningKey.ed25519_public("web", raw)
    _log_signing(stem.App(signing=Signing(keys=[public], require_signed=True)))
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines[0] == (
        "INFO",
        "signing: signs with key 'k1'; verifies k1; unsigned messages are refused",
    )
    assert lines[1][1].startswith("signing: off")
    assert lines[2][0] == "WARNING" and "only public keys" in lines[2][1]
    assert lines[3][1] == (
        "signing: signs with no key; verifies web; unsigned messages are refused"
    )
    assert all(SECRET.decode() not in line for _, line in lines)


def test_hostile_control_messages_are_refused_not_raised() -> None:
    """A control message whose fields cannot be canonicalised (a value that
    is not JSON, nesting deeper than the encoder goes) or whose signature is
    not a string is refused with a reason, never an exception."""
    signing = Signing(keys=[KEY])
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    for message in (
        {"sig": "hmac-sha256:k1:AAAA", "args": {1, 2}},
        {"sig": "hmac-sha256:k1:AAAA", "args": deep},
        {"sig": ["not", "a", "string"]},
        {"sig": "x" * 10_000},
    ):
        problem, _ = signing.check_control(message)
        assert problem is not None


def test_the_environment_replaces_the_apps_signing() -> None:
    """with_env_signing (used by stem.main and the CLI) gives the app the
    keys of STEM_SIGNING_KEYS, or an app with no tasks that signs when
    there is none; without the variable the app is returned unchanged."""
    from stem._config import with_env_signing

    own = stem.App(signing=Signing(keys=[KEY]))
    environ = {"STEM_SIGNING_KEYS": f"env-1={_b64(SECRET)}", "STEM_REQUIRE_SIGNED": "1"}
    replaced = with_env_signing(own, environ)
    assert replaced is not None and replaced is not own
    assert replaced.signing is not None and replaced.signing.key_ids() == ["env-1"]
    assert own.signing is not None and own.signing.key_ids() == ["k1"]
    bare = with_env_signing(None, environ)
    assert bare is not None and bare.signing is not None and not bare.tasks
    assert with_env_signing(own, {}) is own
    assert with_env_signing(None, {}) is None
