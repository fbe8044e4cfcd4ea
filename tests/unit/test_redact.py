"""Passwords out of what is shown (stem._redact): userinfo passwords with
any character, secret query parameters, URLs in free text, and error text
about a known URL."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stem._redact import redact, redact_text, scrub, secrets_of


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:pw@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:pa#ss@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:12#ss@host:6379/0", "redis://user:***@host:6379/0"),
        (
            "postgresql://u:p/ss?w@rd@db.example:5432/stem?sslmode=require",
            "postgresql://u:***@db.example:5432/stem?sslmode=require",
        ),
        ("postgresql://u:p@ss@db/stem", "postgresql://u:***@db/stem"),
        (
            "redis://host:6379/0?password=hunter2&db=1",
            "redis://host:6379/0?password=***&db=1",
        ),
        (
            "postgresql://db/stem?user=u&pass=s3cr&et&sslmode=verify-full",
            "postgresql://db/stem?user=u&pass=***&sslmode=verify-full",
        ),
        ("redis://host/0?auth_token=abc#frag", "redis://host/0?auth_token=***"),
        (
            "postgresql://db/x?sslpassword=k&api_key=z&application_name=w",
            "postgresql://db/x?sslpassword=***&api_key=***&application_name=w",
        ),
        (
            "redis+cluster://:pw@h1:7000,h2:7001/0",
            "redis+cluster://:***@h1:7000,h2:7001/0",
        ),
        ("redis://:pw@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
        ("redis://u:pw@host:99999/0", "redis://u:***@host:99999/0"),
        ("redis:/user:pass@host", "redis:***@host"),
        # nothing secret: shown as given
        ("sqlite:///path/with@sign.db", "sqlite:///path/with@sign.db"),
        ("sqlite:///stem.db?timeout=5", "sqlite:///stem.db?timeout=5"),
        ("redis://user@host/0", "redis://user@host/0"),
        ("memory://", "memory://"),
    ],
)
def test_passwords_and_secret_parameters_are_masked(url: str, shown: str) -> None:
    """Every password is masked, whatever characters it holds; secret query
    values too; a URL without secrets is shown unchanged."""
    assert redact(url) == shown


def test_an_ambiguous_at_sign_masks_more_not_less() -> None:
    """An ``@`` after the authority may end a password holding ``/`` or
    ``?``: the pattern masks up to it rather than risk showing a piece."""
    assert "client_name" not in redact("redis://host:6379/0?client_name=a@b")
    assert redact("redis://u:p?w@host/0") == "redis://u:***@host/0"


_PASSWORD = st.text(
    alphabet=st.sampled_from("abcXYZ019#/?@&:=%!;,. $"), min_size=4, max_size=24
).filter(lambda p: len(set(p) - set("#/?@&:=%;,. ")) >= 3)


@given(password=_PASSWORD, user=st.sampled_from(["", "stem", "a.b"]))
def test_no_password_survives_in_any_form(password: str, user: str) -> None:
    """For passwords of any characters in the userinfo, and as
    ``?password=`` (where ``&`` and ``;`` separate parameters for the
    drivers too), neither the password nor its longer pieces are shown."""
    in_query = password.replace("&", "").replace(";", "")
    for url in (
        f"redis://{user}:{password}@cache.internal:6379/0",
        f"postgresql://{user}:{password}@db.internal:5432/app?sslmode=require",
        f"postgresql://db.internal/app?user=u&password={in_query}&x=1",
    ):
        shown = redact(url)
        assert password not in shown
        assert len(in_query) < 4 or in_query not in shown
        for piece in _pieces(password):
            assert piece not in shown.split("://", 1)[1].replace("cache.internal", "")


def _pieces(password: str) -> list[str]:
    """Runs of 4+ password characters that a wrong split would leave."""
    out = []
    for sep in "#/?@&":
        out += [p for p in password.split(sep) if len(p) >= 4 and p.strip(" .,;:=%")]
    return [p for p in out if p != password and not set(p) <= set("0123456789")]


def test_urls_in_text_and_errors_about_a_url() -> None:
    """redact_text masks every URL in a message; scrub also removes the
    pieces of a known URL's password that a driver may quote."""
    text = "failed: redis://:pa#ss@h:1/0 and postgresql://x:y@z/db?password=q then"
    assert redact_text(text) == (
        "failed: redis://:***@h:1/0 and postgresql://x:***@z/db?password=*** then"
    )
    url = "redis://user:s3cr#et-part@h/0"
    assert secrets_of(url)[0] == "s3cr#et-part"
    message = "cannot parse 's3cr' near 'et-part' in redis://user:s3cr#et-part@h/0"
    clean = scrub(message, url)
    assert "s3cr#et-part" not in clean and "redis://user:***@h/0" in clean
    assert redact_text("no url here: user:pw@host") == "no url here: user:pw@host"
