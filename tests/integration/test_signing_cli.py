"""STEM_SIGNING_KEYS at the edge: the real ``stem`` command signs what it
enqueues, and a malformed variable is one line on stderr that never shows a
secret."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

import stem
from stem._signing import SIGNATURE_HEADER
from stem.adapters.sqlite import open_backend
from tests.cli_process import one_line_error, run_stem

SECRET = b"a secret for the command line 32"
KEYS = f"cli-1={base64.b64encode(SECRET).decode()}"


async def test_the_cli_signs_with_the_keys_of_the_environment(tmp_path: Path) -> None:
    """``stem enqueue`` with STEM_SIGNING_KEYS queues a message signed by
    the active key that a worker requiring signatures accepts."""
    url = f"sqlite:///{tmp_path / 'stem.db'}"
    proc = run_stem(
        "enqueue", "cli.job", "--args", '{"n": 1}', "--url", url,
        env={"STEM_SIGNING_KEYS": KEYS},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    task_id = proc.stdout.strip()
    strict = stem.Signing(
        keys=[stem.SigningKey.hmac("cli-1", SECRET)], require_signed=True
    )
    async with open_backend(url) as backend:
        [delivery] = await backend.broker.claim(
            ["default"], limit=1, lease=30, consumer="test"
        )
    env = delivery.envelope
    assert env is not None and env.id == task_id
    assert env.headers[SIGNATURE_HEADER].startswith("hmac-sha256:cli-1:")
    assert strict.check_envelope(env) is None


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"STEM_SIGNING_KEYS": "cli-1"}, "must be 'id=secret'"),
        ({"STEM_SIGNING_KEYS": "cli-1=hmac:*not-base64*"}, "not base64"),
        ({"STEM_SIGNING_KEYS": "cli-1=c2hvcnQ="}, "at least 16 bytes"),
        ({"STEM_REQUIRE_SIGNED": "1"}, "STEM_SIGNING_KEYS is not"),
    ],
)
def test_a_bad_signing_variable_is_one_line(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    """A malformed STEM_SIGNING_KEYS is a one-line configuration error (exit
    2) naming the variable, without the secret."""
    url = f"sqlite:///{tmp_path / 'stem.db'}"
    proc = run_stem("enqueue", "cli.job", "--url", url, env=environ)
    line = one_line_error(proc, 2)
    assert message in line
    assert "STEM_" in line
    assert base64.b64encode(SECRET).decode()[:-4] not in line


def test_keys_new_makes_keys_that_sign_and_keys_show_checks_them() -> None:
    """``stem keys new`` prints STEM_SIGNING_KEYS items (an HMAC secret, an
    Ed25519 pair) that sign and verify; ``stem keys show`` lists their ids
    and roles without a secret; a bad id is a one-line error."""
    hmac_item = run_stem("keys", "new", "ops-2025").stdout.strip()
    pair = json.loads(run_stem("keys", "new", "web", "--ed25519", "--json").stdout)
    producer = stem.Signing.from_env({"STEM_SIGNING_KEYS": pair["private"]})
    worker = stem.Signing.from_env(
        {
            "STEM_SIGNING_KEYS": f"{hmac_item},{pair['public']}",
            "STEM_REQUIRE_SIGNED": "1",
        }
    )
    assert producer is not None and worker is not None
    token = producer.sign(b"payload")
    assert worker.verify(b"payload", token) == (None, "web")
    assert worker.signing_key is not None and worker.signing_key.id == "ops-2025"
    env = {
        "STEM_SIGNING_KEYS": f"{hmac_item},{pair['public']}",
        "STEM_REQUIRE_SIGNED": "1",
    }
    shown = run_stem("keys", "show", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {
        "keys": [
            {"id": "ops-2025", "algorithm": "hmac-sha256", "signs": True},
            {"id": "web", "algorithm": "ed25519", "signs": False},
        ],
        "active": "ops-2025",
        "require_signed": True,
    }
    text = run_stem("keys", "show", env=env).stdout
    assert "ops-2025  hmac-sha256 (secret), signs" in text
    assert hmac_item.split(":", 1)[1] not in text + shown.stdout
    assert "bad id" in one_line_error(run_stem("keys", "new", "bad id"), 2)
    assert "not set" in one_line_error(
        run_stem("keys", "show", env={"STEM_SIGNING_KEYS": ""}), 1
    )
