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


def breakdown(original: bytes, signed: bytes) -> dict[str, int]:
    """Where the bytes of the (last) signature go: /Contents (hex, reserved vs actual CMS), the embedded
    font program, the other streams it added (appearance, ToUnicode), and the rest (dictionaries, xref)."""
    import io

    import pikepdf

    added = len(signed) - len(original)
    with pikepdf.open(io.BytesIO(signed)) as pdf, pikepdf.open(io.BytesIO(original)) as before:
        old = {o.objgen for o in before.objects}
        new = [o for o in pdf.objects if o.objgen not in old]
        annot = pdf.pages[0].Annots[-1]
        contents = bytes(annot.V.Contents)
        font = sum(
            len(o.FontFile2.read_raw_bytes()) for o in new if isinstance(o, pikepdf.Dictionary) and "/FontFile2" in o
        )
        streams = sum(len(o.read_raw_bytes()) for o in new if isinstance(o, pikepdf.Stream))
    hex_reserved = 2 * len(contents) + 2
    return {
        "added": added,
        "contents_hex_reserved": hex_reserved,
        "cms_der": len(contents.rstrip(b"\0")),
        "font_program": font,
        "other_streams": streams - font,
        "dicts_xref": added - hex_reserved - streams,
    }


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
        print(f"  bytes added per signature: median {statistics.median(added):.0f}, min {min(added)}, max {max(added)}")
        print(f"  input size {jobs[0].input.stat().st_size} bytes")
        parts = breakdown(jobs[0].input.read_bytes(), jobs[0].output.read_bytes())
        print("  one signature: " + ", ".join(f"{k} {v}" for k, v in parts.items()))


if __name__ == "__main__":
    main()
