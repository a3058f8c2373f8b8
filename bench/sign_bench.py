"""Signing benchmark: signatures per second for 20 one-page PDFs with one login, and bytes per signature.

Run: .venv/bin/python -m bench.sign_bench [--n 20] [--role officer|organisation]
Uses a throw-away SoftHSM2 token (the real vendor token will be slower: measure on the Pi with it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from appliance.sign.batch import SignJob, sign_batch
from tests.softhsm import MODULE, make_token, simple_pdf


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--role", choices=["officer", "organisation"], default="organisation")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sign-bench-") as tmp:
        d = Path(tmp)
        token = make_token(d / "hsm")
        os.environ["SOFTHSM2_CONF"] = str(token.conf)
        jobs = [SignJob(simple_pdf(d / f"in{i}.pdf"), d / f"out{i}.pdf", args.role) for i in range(args.n)]
        sign_batch(jobs[:1], token.pin, module=MODULE, serial=token.serial)  # warm the font cache
        t0 = time.perf_counter()
        results = sign_batch(jobs, token.pin, module=MODULE, serial=token.serial)
        wall = time.perf_counter() - t0
        added = [r.bytes_added for r in results]
        print(f"{args.n} x one-page PDF, role {args.role}, one login (worker process start included)")
        print(f"  wall {wall:.2f} s -> {args.n / wall:.1f} signatures/s")
        print(
            f"  bytes added per signature: median {statistics.median(added):.0f}, "
            f"min {min(added)}, max {max(added)}"
        )
        print(f"  input size {jobs[0].input.stat().st_size} bytes")


if __name__ == "__main__":
    main()
