"""Codec: envelopes encoded and decoded per second (the per-message cost of
every claim and publish), for a small envelope and one with larger args.

Prints one line per case: operations per second, medians of --runs runs.
"lenient" is what decoding cost before it was made total (``json.loads``
then the field checks, no NaN/Infinity/depth checks), measured interleaved
with the strict reader in the same run. Two trees can also be compared by
running their copies alternately.

Usage: .venv/bin/python benchmarks/codec.py [--runs 5] [-n 20000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import stem
from stem._codec import decode_envelope, encode_envelope, envelope_from_dict

CASES = {
    "small": {"n": 1, "to": "a@b.c"},
    "1 KiB args": {
        "items": [{"sku": f"s{i}", "qty": i, "price": i * 1.5} for i in range(20)],
        "note": "x" * 200,
    },
}


def rate(fn: object, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()  # type: ignore[operator]
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"stem from {Path(stem.__file__).resolve().parent}")
    for label, payload in CASES.items():
        env = stem.Envelope(
            id="0190f1c2-aaaa-bbbb", name="mail.send", args=payload, enqueued_at=1.0
        )
        body = encode_envelope(env)
        enc: list[float] = []
        dec: list[float] = []
        lenient: list[float] = []
        for _ in range(args.runs):  # interleaved
            enc.append(rate(partial(encode_envelope, env), args.n))
            dec.append(rate(partial(decode_envelope, body), args.n))
            lenient.append(rate(partial(_lenient, body), args.n))
        print(
            f"{label:>11} ({len(body)} B): encode {statistics.median(enc):,.0f}/s, "
            f"decode {statistics.median(dec):,.0f}/s "
            f"(lenient {statistics.median(lenient):,.0f}/s)"
        )


def _lenient(body: bytes) -> object:
    return envelope_from_dict(json.loads(body))


if __name__ == "__main__":
    main()
