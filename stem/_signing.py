"""Signed task messages and control requests (pure: no I/O).

A :class:`Signing` holds keys with ids: HMAC-SHA256 secrets, and optionally
Ed25519 keys (a private key signs; a public key only verifies; the
``signing`` extra installs ``cryptography`` for them). One key is active for
signing; every key verifies, so keys rotate without downtime.

A signature is the text ``"<algorithm>:<key id>:<base64url signature>"``:

- on a task envelope, in the header ``stem-signature``, over
  :func:`envelope_payload` (the task id, name, args, ``max_retries``,
  ``expires``, the user headers and the platform meta except the attempt
  history), so the retries, hand-backs and dead-letter replays of a task,
  which change only its attempt, times, queue and history, keep it valid;
- on a control request or reply, in its ``sig`` field, over every other
  field of the message (:func:`control_payload`).

See docs/security.md for what this does and does not protect.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

import attrs

from ._envelope import Envelope
from ._errors import ConfigError

#: the envelope header carrying a task's signature
SIGNATURE_HEADER = "stem-signature"
#: headers a publisher rewrites (trace context): not covered by signatures
UNSIGNED_HEADERS = frozenset({"traceparent", "tracestate", SIGNATURE_HEADER})
#: the envelope meta key that changes on every retry: not covered
UNSIGNED_META = frozenset({"history"})
#: the field of a control message carrying its signature
CONTROL_SIGNATURE = "sig"

Algorithm = Literal["hmac-sha256", "ed25519"]
HMAC_SHA256: Final = "hmac-sha256"
ED25519: Final = "ed25519"
_ALGORITHMS: tuple[str, ...] = (HMAC_SHA256, ED25519)

#: the shortest HMAC secret accepted (bytes): 128 bits
MIN_SECRET_BYTES = 16
_MAX_KEY_ID = 64
_MAX_TOKEN = 300
_KEY_ID_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
)
_ED25519_MISSING = (
    "Ed25519 keys need the 'cryptography' package: pip install 'trio-stem[signing]'"
)


def _check_key_id(key_id: object) -> str:
    if (
        not isinstance(key_id, str)
        or not key_id
        or len(key_id) > _MAX_KEY_ID
        or not set(key_id) <= _KEY_ID_CHARS
    ):
        raise ConfigError(
            "a signing key id must be 1-64 characters of letters, digits, "
            f"'.', '_' or '-', got {key_id!r:.80}"
        )
    return key_id


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded, altchars=b"-_", validate=True)


def _ed25519() -> tuple[Any, Any]:
    """cryptography's ed25519 and serialization modules (an optional
    dependency, imported when an Ed25519 key is made)."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:  # the optional extra is not installed
        raise ConfigError(_ED25519_MISSING) from None
    return ed25519, serialization


@attrs.frozen(kw_only=True, repr=False)
class SigningKey:
    """One key: its id, algorithm and material. Build with
    :meth:`hmac`, :meth:`ed25519_private` or :meth:`ed25519_public`.
    Its repr never shows the secret."""

    id: str = attrs.field(converter=_check_key_id)
    algorithm: Algorithm
    _secret: bytes | None = attrs.field(default=None, alias="secret")
    _signer: Any = attrs.field(default=None, alias="signer", eq=False)
    _verifier: Any = attrs.field(default=None, alias="verifier", eq=False)

    @classmethod
    def hmac(cls, key_id: str, secret: bytes | str) -> SigningKey:
        """An HMAC-SHA256 key (shared by producers and workers); ``secret``
        is at least 16 bytes (a str is taken as its UTF-8 bytes)."""
        raw = secret.encode() if isinstance(secret, str) else secret
        if not isinstance(raw, bytes) or len(raw) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"the HMAC secret of signing key {key_id!r:.80} must be at least "
                f"{MIN_SECRET_BYTES} bytes"
            )
        return cls(id=key_id, algorithm=HMAC_SHA256, secret=raw)

    @classmethod
    def ed25519_private(cls, key_id: str, private_key: bytes) -> SigningKey:
        """An Ed25519 private key (32 raw bytes, or PEM): signs and
        verifies. Needs the ``signing`` extra."""
        ed, serialization = _ed25519()
        try:
            if private_key.startswith(b"-----"):
                key = serialization.load_pem_private_key(private_key, password=None)
                if not isinstance(key, ed.Ed25519PrivateKey):
                    raise ValueError("not an Ed25519 private key")
            else:
                key = ed.Ed25519PrivateKey.from_private_bytes(private_key)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"signing key {key_id!r:.80}: {exc}") from None
        return cls(id=key_id, algorithm=ED25519, signer=key, verifier=key.public_key())

    @classmethod
    def ed25519_public(cls, key_id: str, public_key: bytes) -> SigningKey:
        """An Ed25519 public key (32 raw bytes, or PEM): verifies only.
        Needs the ``signing`` extra."""
        ed, serialization = _ed25519()
        try:
            if public_key.startswith(b"-----"):
                key = serialization.load_pem_public_key(public_key)
                if not isinstance(key, ed.Ed25519PublicKey):
                    raise ValueError("not an Ed25519 public key")
            else:
                key = ed.Ed25519PublicKey.from_public_bytes(public_key)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"signing key {key_id!r:.80}: {exc}") from None
        return cls(id=key_id, algorithm=ED25519, verifier=key)

    @property
    def can_sign(self) -> bool:
        return self._secret is not None or self._signer is not None

    def sign(self, data: bytes) -> str:
        """The signature token of ``data`` (ValueError for a public key)."""
        if self._secret is not None:
            mac = hmac.digest(self._secret, data, "sha256")
            return f"{HMAC_SHA256}:{self.id}:{_b64(mac)}"
        if self._signer is None:
            raise ValueError(f"signing key {self.id!r} is a public key: it cannot sign")
        return f"{ED25519}:{self.id}:{_b64(self._signer.sign(data))}"

    def verify(self, data: bytes, raw: bytes) -> bool:
        """Whether ``raw`` is this key's signature of ``data``."""
        if self._secret is not None:
            mac = hmac.digest(self._secret, data, "sha256")
            return hmac.compare_digest(mac, raw)
        try:
            self._verifier.verify(raw, data)
        except Exception:  # cryptography's InvalidSignature (or a bad length)
            return False
        return True

    def __repr__(self) -> str:
        kind = "private" if self._signer is not None else "public"
        shown = "hmac" if self._secret is not None else kind
        return f"<SigningKey {self.id!r} {self.algorithm} ({shown})>"


def _key_tuple(keys: Iterable[SigningKey]) -> tuple[SigningKey, ...]:
    return tuple(keys)


def _check_keys(
    instance: Signing, attribute: Any, keys: tuple[SigningKey, ...]
) -> None:
    if not keys:
        raise ConfigError("Signing needs at least one key")
    seen: set[str] = set()
    for key in keys:
        if not isinstance(key, SigningKey):
            raise ConfigError(f"signing keys must be stem.SigningKey, got {key!r:.80}")
        if key.id in seen:
            raise ConfigError(f"two signing keys have the id {key.id!r}")
        seen.add(key.id)


@attrs.frozen(kw_only=True)
class Signing:
    """The keys a node signs and verifies with, and its policy.

    ``Signing(keys=[SigningKey.hmac("2025-06", secret), ...], active=...,
    require_signed=True)``. ``active`` names the key that signs (default:
    the first key that can sign; None when every key is public, and this
    node then signs nothing). Every key verifies.

    ``require_signed``: a task message without a valid signature is
    dead-lettered (``signature-invalid``) and never runs; a control request
    or reply without one is ignored and logged. Without it, unsigned
    messages are accepted (for a rollout), but a message carrying a
    signature that does not verify is refused all the same.

    ``max_age``: how old (in seconds, by the sender's clock) a signed
    control request may be; older ones, and a request id seen before, are
    refused as replays.
    """

    keys: tuple[SigningKey, ...] = attrs.field(
        converter=_key_tuple, validator=_check_keys
    )
    active: str | None = None
    require_signed: bool = False
    max_age: float = 300.0
    _by_id: dict[str, SigningKey] = attrs.field(init=False, eq=False, repr=False)
    _signer: SigningKey | None = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        by_id = {key.id: key for key in self.keys}
        if self.active is None:
            signer = next((key for key in self.keys if key.can_sign), None)
        else:
            signer = by_id.get(self.active)
            if signer is None:
                raise ConfigError(
                    f"the active signing key {self.active!r:.80} is not among "
                    f"the keys ({', '.join(by_id)})"
                )
            if not signer.can_sign:
                raise ConfigError(
                    f"the active signing key {self.active!r} is a public key: "
                    "it cannot sign"
                )
        if not (isinstance(self.max_age, int | float) and self.max_age > 0):
            raise ConfigError(f"max_age must be > 0 seconds, got {self.max_age!r}")
        object.__setattr__(self, "_by_id", by_id)
        object.__setattr__(self, "_signer", signer)

    @property
    def signing_key(self) -> SigningKey | None:
        """The key this node signs with (None: it only verifies)."""
        return self._signer

    def key_ids(self) -> list[str]:
        return list(self._by_id)

    # -- raw tokens ---------------------------------------------------------

    def sign(self, data: bytes) -> str | None:
        """The active key's signature token of ``data``; None without one."""
        return None if self._signer is None else self._signer.sign(data)

    def verify(self, data: bytes, token: object) -> tuple[str | None, str]:
        """``(problem, key id)``: problem is None when ``token`` is a valid
        signature of ``data`` by one of the keys, else why it is not."""
        if not isinstance(token, str) or len(token) > _MAX_TOKEN:
            return "the signature is not a short string", ""
        algorithm, _, rest = token.partition(":")
        key_id, _, encoded = rest.partition(":")
        if algorithm not in _ALGORITHMS or not key_id or not encoded:
            return "the signature is malformed", ""
        key = self._by_id.get(key_id)
        if key is None:
            return f"signed with an unknown key {key_id!r:.70}", ""
        if key.algorithm != algorithm:
            return f"key {key_id!r} is not an {algorithm} key", key_id
        try:
            raw = _unb64(encoded)
        except (binascii.Error, ValueError):
            return "the signature is not base64url", key_id
        if not key.verify(data, raw):
            return f"the signature by key {key_id!r} does not match", key_id
        return None, key_id

    # -- task envelopes -----------------------------------------------------

    def sign_envelope(self, env: Envelope) -> Envelope:
        """``env`` with its signature header (unchanged without a signing key)."""
        token = self.sign(envelope_payload(env))
        if token is None:
            return env
        return attrs.evolve(env, headers={**env.headers, SIGNATURE_HEADER: token})

    def signed_headers(
        self,
        headers: dict[str, str],
        *,
        id: str,
        name: str,
        args: dict[str, Any],
        max_retries: int,
        expires: float | None,
        meta: dict[str, Any],
    ) -> dict[str, str]:
        """``headers`` plus the signature of the envelope these fields make
        (``headers`` itself without a signing key): what
        :meth:`sign_envelope` adds, without building the envelope twice."""
        token = self.sign(
            task_payload(id, name, args, max_retries, expires, headers, meta)
        )
        if token is None:
            return headers
        return {**headers, SIGNATURE_HEADER: token}

    def check_envelope(self, env: Envelope) -> str | None:
        """Why ``env`` must not run (None: it may). A signature that does not
        verify is always refused; a missing one only with
        ``require_signed``."""
        token = env.headers.get(SIGNATURE_HEADER)
        if token is None:
            return "the message is not signed" if self.require_signed else None
        problem, _ = self.verify(envelope_payload(env), token)
        return problem

    # -- control messages ---------------------------------------------------

    def sign_control(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """``message`` with its ``sig`` field (unchanged without a key)."""
        body = {k: v for k, v in message.items() if k != CONTROL_SIGNATURE}
        token = self.sign(control_payload(body))
        if token is not None:
            body[CONTROL_SIGNATURE] = token
        return body

    def check_control(self, message: Mapping[str, Any]) -> tuple[str | None, str]:
        """``(problem, key id)`` for a control message: problem None when it
        may be obeyed (signed by a known key, or unsigned without
        ``require_signed``). Freshness is checked by the receiver."""
        token = message.get(CONTROL_SIGNATURE)
        if token is None:
            if self.require_signed:
                return "the request is not signed", ""
            return None, ""
        try:
            payload = control_payload(message)
        except (TypeError, ValueError, RecursionError):
            return "the message cannot be canonicalised", ""
        return self.verify(payload, token)

    # -- configuration ------------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Signing | None:
        """Signing from ``STEM_SIGNING_KEYS`` (None when unset), with
        ``STEM_SIGNING_ACTIVE`` and ``STEM_REQUIRE_SIGNED``; ConfigError
        naming the variable when one is malformed (never showing a secret).

        ``STEM_SIGNING_KEYS`` is a comma-separated list of ``id=secret``
        items; a secret is ``hmac:<base64>`` (or just ``<base64>``),
        ``ed25519-private:<base64 of 32 bytes>`` or
        ``ed25519-public:<base64 of 32 bytes>``."""
        text = environ.get("STEM_SIGNING_KEYS", "").strip()
        require = environ.get("STEM_REQUIRE_SIGNED", "").strip().lower()
        if require not in ("", "0", "1", "true", "false", "yes", "no"):
            raise ConfigError(
                f"STEM_REQUIRE_SIGNED must be 1/0, true/false or yes/no, got "
                f"{require!r:.40}"
            )
        if not text:
            if require in ("1", "true", "yes"):
                raise ConfigError(
                    "STEM_REQUIRE_SIGNED is set but STEM_SIGNING_KEYS is not"
                )
            return None
        keys = parse_keys(text, var="STEM_SIGNING_KEYS")
        active = environ.get("STEM_SIGNING_ACTIVE", "").strip() or None
        try:
            return cls(
                keys=keys,
                active=active,
                require_signed=require in ("1", "true", "yes"),
            )
        except ConfigError as exc:
            raise ConfigError(f"STEM_SIGNING_KEYS/STEM_SIGNING_ACTIVE: {exc}") from None


def new_key_items(key_id: str, *, ed25519: bool = False) -> dict[str, str]:
    """Fresh key material as ``STEM_SIGNING_KEYS`` items: ``{"hmac": ...}``
    (32 random bytes), or ``{"private": ..., "public": ...}`` for an
    Ed25519 pair (needs the ``signing`` extra)."""
    _check_key_id(key_id)
    if not ed25519:
        return {"hmac": f"{key_id}=hmac:{base64.b64encode(os.urandom(32)).decode()}"}
    ed, _ = _ed25519()
    private = ed.Ed25519PrivateKey.generate()
    raw_private: bytes = private.private_bytes_raw()
    raw_public: bytes = private.public_key().public_bytes_raw()
    return {
        "private": f"{key_id}=ed25519-private:{base64.b64encode(raw_private).decode()}",
        "public": f"{key_id}=ed25519-public:{base64.b64encode(raw_public).decode()}",
    }


def parse_keys(text: str, *, var: str) -> list[SigningKey]:
    """The keys of a ``STEM_SIGNING_KEYS`` value (see :meth:`Signing.from_env`)."""
    keys: list[SigningKey] = []
    for position, item in enumerate(text.split(","), 1):
        key_id, eq, material = item.strip().partition("=")
        key_id = key_id.strip()
        if not eq or not key_id or not material:
            raise ConfigError(
                f"{var}: item {position} must be 'id=secret' "
                "(secret: hmac:<base64>, ed25519-private:<base64> or "
                "ed25519-public:<base64>)"
            )
        kind, colon, encoded = material.partition(":")
        if not colon:
            kind, encoded = "hmac", material
        try:
            raw = base64.b64decode(
                encoded.strip().replace("-", "+").replace("_", "/")
                + "=" * (-len(encoded.strip()) % 4),
                validate=True,
            )
        except (binascii.Error, ValueError):
            raise ConfigError(
                f"{var}: the secret of key {key_id!r:.70} is not base64"
            ) from None
        try:
            match kind:
                case "hmac":
                    keys.append(SigningKey.hmac(key_id, raw))
                case "ed25519-private":
                    keys.append(SigningKey.ed25519_private(key_id, raw))
                case "ed25519-public":
                    keys.append(SigningKey.ed25519_public(key_id, raw))
                case _:
                    raise ConfigError(
                        f"unknown key kind {kind!r:.40} (hmac, ed25519-private "
                        "or ed25519-public)"
                    )
        except ConfigError as exc:
            raise ConfigError(f"{var}: item {position}: {exc}") from None
    return keys


#: one encoder (``json.dumps`` with options builds a new one per call)
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)


def _canonical(value: Any) -> bytes:
    return _ENCODER.encode(value).encode("ascii")


def envelope_payload(env: Envelope) -> bytes:
    """The bytes a task's signature covers: what decides what runs (id,
    name, args, ``max_retries``, ``expires``, user headers, platform meta
    such as the canvas continuation or workflow step), not what a retry or a
    replay changes (attempt, times, queue, priority, attempt history, trace
    context)."""
    return task_payload(
        env.id, env.name, env.args, env.max_retries, env.expires, env.headers, env.meta
    )


def task_payload(
    id: str,
    name: str,
    args: dict[str, Any],
    max_retries: int,
    expires: float | None,
    headers: dict[str, str],
    meta: dict[str, Any],
) -> bytes:
    """:func:`envelope_payload` from the fields of an envelope."""
    if headers:
        headers = {k: v for k, v in headers.items() if k not in UNSIGNED_HEADERS}
    if "history" in meta:
        meta = {k: v for k, v in meta.items() if k not in UNSIGNED_META}
    return _canonical(
        ["stem.task/1", id, name, args, max_retries, expires, headers, meta]
    )


def control_payload(message: Mapping[str, Any]) -> bytes:
    """The bytes a control message's signature covers: all its fields but
    the signature (TypeError/ValueError when a value is not JSON)."""
    body = {k: v for k, v in message.items() if k != CONTROL_SIGNATURE}
    return _canonical(["stem.control/1", body])


__all__ = [
    "CONTROL_SIGNATURE",
    "SIGNATURE_HEADER",
    "Signing",
    "SigningKey",
    "control_payload",
    "envelope_payload",
    "parse_keys",
]
