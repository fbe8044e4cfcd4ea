"""``stem keys``: make signing keys and show what STEM_SIGNING_KEYS holds
(docs/security.md)."""

from __future__ import annotations

import os

import click

from .._errors import ConfigError
from .._signing import Signing, new_key_items
from ._common import EXIT_CONFIG, echo, echo_json, fail, json_option


@click.group()
def keys() -> None:
    """Signing keys for task messages and remote control (see
    docs/security.md)."""


@keys.command("new")
@click.argument("key_id", metavar="ID")
@click.option(
    "--ed25519",
    is_flag=True,
    help="An Ed25519 pair (producers hold the private key, workers the "
    "public one) instead of an HMAC secret. Needs trio-stem[signing].",
)
@json_option
def keys_new(key_id: str, ed25519: bool, as_json: bool) -> None:
    """Print a new key as a STEM_SIGNING_KEYS item (ID=kind:base64).

    \b
    Examples:
      stem keys new 2025-06                # ID=hmac:... (share with every node)
      stem keys new web-2025 --ed25519     # private: ... / public: ...
      export STEM_SIGNING_KEYS="$(stem keys new 2025-06),$STEM_SIGNING_KEYS"
    """
    try:
        items = new_key_items(key_id, ed25519=ed25519)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    if as_json:
        echo_json({"id": key_id, **items})
    elif ed25519:
        echo(f"private: {items['private']}")
        echo(f"public:  {items['public']}")
    else:
        echo(items["hmac"])


@keys.command("show")
@json_option
def keys_show(as_json: bool) -> None:
    """Check STEM_SIGNING_KEYS (with STEM_SIGNING_ACTIVE and
    STEM_REQUIRE_SIGNED) and show its key ids, never the keys.

    Exit 2 when a variable is malformed, 1 when no keys are set.
    """
    try:
        signing = Signing.from_env(os.environ)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    if signing is None:
        fail("STEM_SIGNING_KEYS is not set: nothing is signed")
    active = signing.signing_key
    record = {
        "keys": [
            {"id": key.id, "algorithm": key.algorithm, "signs": key.can_sign}
            for key in signing.keys
        ],
        "active": active.id if active is not None else None,
        "require_signed": signing.require_signed,
    }
    if as_json:
        echo_json(record)
        return
    for key in signing.keys:
        role = "signs" if key is active else "verifies"
        kind = "private" if key.can_sign else "public"
        if key.algorithm == "hmac-sha256":
            kind = "secret"
        echo(f"{key.id}  {key.algorithm} ({kind}), {role}")
    echo(f"unsigned messages are {'refused' if signing.require_signed else 'accepted'}")
