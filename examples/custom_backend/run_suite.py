"""Stem's contract suite against the acme backend, without pytest."""

from acme_backend import open_acme_backend

import stem.testing

for name, check in stem.testing.all_checks().items():
    try:
        stem.testing.run_check(check, open_acme_backend)
    except stem.testing.CheckSkipped as skipped:
        print(f"{name}: skipped ({skipped})")
    else:
        print(f"{name}: ok")
