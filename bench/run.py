"""Benchmark: our pipeline (`appliance digitize`) against the anchor OCRmyPDF, on the synthetic corpus.

    python -m bench.run                       # the fixed seed set (5 per kind) + a 20-page batch
    python -m bench.run --pages 10 --batch 50 # bigger
    python -m bench.run --corpus DIR          # an existing corpus (manifest.json from bench.corpus)
    python -m bench.run --no-ours             # anchor only (or --no-anchor)

Per input and tool, one fresh process per document. Measured the same way for both tools:
- text: `pdftotext` (poppler, default reading-order mode) of the output PDF, compared with the
  ground truth by `cer_unordered` (headline) and the strict, order-dependent `cer`;
- seconds per page: wall time of the whole process (start to exit), divided by pages;
- KB per page: output file size / pages (1 KB = 1000 bytes);
- peak RSS: psutil polls the process and all its descendants every 20 ms; we report the peak of the
  tree's summed RSS and the peak of the biggest single process (`os.wait4` ru_maxrss of the direct
  child is recorded too). Short peaks between two polls can be missed.

OCRmyPDF runs as its users run it: `ocrmypdf -l vie --rotate-pages --deskew --output-type pdfa
--jobs 1 IN OUT`, its own defaults otherwise (any OMP_THREAD_LIMIT of the caller is removed; with
--jobs 1 on a one-page input OCRmyPDF then limits Tesseract to 1 thread itself). It takes the image
file directly (it converts it to PDF with img2pdf internally; that time is inside its wall time,
as our own image loading is inside ours). Camera photos carry no dpi, so OCRmyPDF gets
`--image-dpi 300` for them; our pipeline gets `--photo` for them, as the camera path would.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.corpus import FIXED_SEEDS, KINDS, cer, cer_unordered, write_corpus

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.02
TIMEOUT_S = 1800.0


@dataclass(frozen=True, slots=True)
class Measured:
    """One process run: wall time, memory, exit status, and where its output went."""

    wall_s: float
    peak_tree_rss_mb: float
    peak_tree_pss_mb: float  # shared pages split between their sharers: what the tree really holds
    peak_single_rss_mb: float
    maxrss_child_mb: float  # os.wait4 ru_maxrss of the direct child (it and its waited-for children)
    returncode: int
    stdout: str
    stderr_tail: str


def measure(cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float = TIMEOUT_S) -> Measured:
    """Run `cmd` to completion, polling the RSS and PSS of its process tree every 20 ms.

    The summed RSS counts every shared page once per process; a child forked to start a program (before
    its exec) shows the whole parent's RSS, so the tree's RSS briefly doubles at each tesseract start.
    The summed PSS (Linux's proportional set size, each shared page split between its sharers) does not.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=env)
        ps = psutil.Process(proc.pid)
        peak_tree = peak_single = peak_pss = 0
        rusage = None
        status = 0
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                rusage = ru
                break
            try:
                procs = [ps, *ps.children(recursive=True)]
            except psutil.NoSuchProcess:
                procs = []
            total = total_pss = 0
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    pss = p.memory_full_info().pss
                except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                    continue
                total += rss
                total_pss += pss
                peak_single = max(peak_single, rss)
            peak_tree = max(peak_tree, total)
            peak_pss = max(peak_pss, total_pss)
            if time.perf_counter() - t0 > timeout:
                for p in procs:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        p.kill()
            time.sleep(POLL_S)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    mb = 1024 * 1024
    return Measured(
        wall_s=wall,
        peak_tree_rss_mb=peak_tree / mb,
        peak_tree_pss_mb=peak_pss / mb,
        peak_single_rss_mb=peak_single / mb,
        maxrss_child_mb=(rusage.ru_maxrss / 1024) if rusage else 0.0,  # Linux: KiB
        returncode=proc.returncode,
        stdout=stdout,
        stderr_tail=stderr[-2000:],
    )


def pdf_text(pdf: Path, page: int | None = None) -> str:
    """`pdftotext` (default mode, UTF-8) of the whole PDF or of one 1-based page."""
    rng = ["-f", str(page), "-l", str(page)] if page else []
    res = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", *rng, str(pdf), "-"], capture_output=True, check=True, timeout=120
    )
    return res.stdout.decode("utf-8", "replace")


def pdf_pages(pdf: Path) -> int:
    res = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True, timeout=60)
    for line in res.stdout.splitlines():
        if line.startswith("Pages:"):
            return int(line.split()[1])
    raise ValueError(f"pdfinfo gave no page count for {pdf}")


# --------------------------------------------------------------------------------------------------
# The two tools


def ours_cmd(
    appliance: Sequence[str], inputs: Sequence[Path], out: Path, photo: bool, workers: int | None
) -> list[str]:
    cmd = [*appliance, "digitize", *map(str, inputs), "-o", str(out), "--json"]
    if photo:
        cmd.append("--photo")
    if workers:
        cmd += ["--workers", str(workers)]
    return cmd


def anchor_cmd(image: Path, out: Path, dpi: int | None) -> list[str]:
    cmd = ["ocrmypdf", "-l", "vie", "--rotate-pages", "--deskew", "--output-type", "pdfa", "--jobs", "1"]
    if not dpi:
        cmd += ["--image-dpi", "300"]
    return [*cmd, str(image), str(out)]


def ours_env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["APPLIANCE_DATA_DIR"] = str(data_dir)  # keep the benchmark's records out of the dev data
    return env


def anchor_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OMP_THREAD_LIMIT", None)  # OCRmyPDF decides itself, as for its users
    return env


@dataclass(slots=True)
class Row:
    """One tool on one input."""

    tool: str
    kind: str
    file: str
    ok: bool
    pages: int = 0
    wall_s: float = 0.0
    s_per_page: float = 0.0
    kb_per_page: float = 0.0
    cer_unordered: float | None = None
    cer: float | None = None
    peak_tree_rss_mb: float = 0.0
    peak_tree_pss_mb: float = 0.0
    peak_single_rss_mb: float = 0.0
    maxrss_child_mb: float = 0.0
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def evaluate(tool: str, kind: str, file: str, m: Measured, out_pdf: Path, truth: str | None) -> Row:
    row = Row(tool, kind, file, ok=False, wall_s=m.wall_s, peak_tree_rss_mb=m.peak_tree_rss_mb,
              peak_tree_pss_mb=m.peak_tree_pss_mb, peak_single_rss_mb=m.peak_single_rss_mb,
              maxrss_child_mb=m.maxrss_child_mb)  # fmt: skip
    if m.returncode != 0 or not out_pdf.exists():
        row.error = f"exit {m.returncode}: {m.stderr_tail.strip().splitlines()[-1:] or ''}"
        return row
    row.ok = True
    row.pages = pdf_pages(out_pdf)
    row.s_per_page = m.wall_s / max(row.pages, 1)
    row.kb_per_page = out_pdf.stat().st_size / 1000 / max(row.pages, 1)
    if truth is not None:
        hyp = pdf_text(out_pdf)
        row.cer_unordered = cer_unordered(truth, hyp)
        row.cer = cer(truth, hyp)
    return row


# --------------------------------------------------------------------------------------------------
# Runs


def run_items(
    corpus: Path, manifest: list[dict[str, Any]], out: Path, tools: Sequence[str], appliance: Sequence[str],
    workers: int | None,
) -> list[Row]:  # fmt: skip
    rows: list[Row] = []
    for item in manifest:
        image = corpus / item["file"]
        truth = (corpus / item["truth"]).read_text(encoding="utf-8")
        kind = item["kind"]
        stem = Path(item["file"]).stem
        for tool in tools:
            pdf = out / tool / f"{stem}.pdf"
            pdf.parent.mkdir(parents=True, exist_ok=True)
            pdf.unlink(missing_ok=True)
            if tool == "ours":
                cmd = ours_cmd(appliance, [image], pdf, photo=is_photo(item), workers=workers)
                m = measure(cmd, ours_env(out / "appliance-data"))
            else:
                m = measure(anchor_cmd(image, pdf, item.get("dpi")), anchor_env())
            row = evaluate(tool, kind, item["file"], m, pdf, truth)
            if tool == "ours" and row.ok:
                row.extra = ours_extra(m.stdout, truth)
            rows.append(row)
            status = (
                f"cer_u={row.cer_unordered:.4f} {row.s_per_page:.1f}s/p {row.kb_per_page:.0f}KB/p "
                f"{row.peak_tree_rss_mb:.0f}MB"
                if row.ok
                else row.error
            )
            print(f"  {tool:6s} {item['file']:32s} {status}", flush=True)
    return rows


def is_photo(item: dict[str, Any]) -> bool:
    """A camera photo: the manifest says so (`"photo": true`), or its kind starts with "camera"."""
    flag = item.get("photo")
    return bool(flag) if isinstance(flag, bool) else str(item.get("kind", "")).startswith("camera")


def ours_extra(stdout: str, truth: str) -> dict[str, Any]:
    """What the --json report adds: its own text's CER, per-stage timings, fields found."""
    try:
        rep = json.loads(stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {"json": "unparsable"}
    extra: dict[str, Any] = {
        "timings": rep.get("timings"),
        "fields": [f.get("name") for f in rep.get("fields", [])],
    }
    if isinstance(rep.get("text"), str):
        extra["json_text_cer_unordered"] = cer_unordered(truth, rep["text"])
    pages = rep.get("pages") or []
    extra["encodings"] = [p.get("encoding") for p in pages]
    extra["flags"] = [p.get("flags") for p in pages]
    return extra


def run_batch(
    out: Path, n: int, appliance: Sequence[str], workers: int | None, seed_base: int, anchor: bool
) -> list[Row]:
    """One `appliance digitize` call with n scan pages (peak RSS of a realistic batch)."""
    bdir = out / "batch_corpus"
    manifest = write_corpus(bdir, n, kinds=("scan300_grey",), seed_base=seed_base + 500)
    images = [bdir / m["file"] for m in manifest]
    truths = [(bdir / m["truth"]).read_text(encoding="utf-8") for m in manifest]
    rows: list[Row] = []
    pdf = out / "ours" / f"batch{n}.pdf"
    pdf.parent.mkdir(parents=True, exist_ok=True)
    pdf.unlink(missing_ok=True)
    m = measure(ours_cmd(appliance, images, pdf, photo=False, workers=workers), ours_env(out / "appliance-data"))
    rows.append(batch_row("ours", m, pdf, truths))
    if anchor:
        # OCRmyPDF takes one image per run: join the scans into one image PDF first (not timed)
        import img2pdf

        src = out / "anchor" / f"batch{n}_input.pdf"
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(img2pdf.convert([str(p) for p in images]))
        apdf = out / "anchor" / f"batch{n}.pdf"
        apdf.unlink(missing_ok=True)
        rows.append(batch_row("anchor", measure(anchor_cmd(src, apdf, 300), anchor_env()), apdf, truths))
    for r in rows:
        print(f"  batch {r.tool:6s} {n} pages: " + (
            f"{r.s_per_page:.1f}s/p {r.kb_per_page:.0f}KB/p peak tree {r.peak_tree_rss_mb:.0f}MB RSS "
            f"{r.peak_tree_pss_mb:.0f}MB PSS "
            f"cer_u={r.cer_unordered:.4f}" if r.ok else r.error), flush=True)  # fmt: skip
    return rows


def batch_row(tool: str, m: Measured, pdf: Path, truths: list[str]) -> Row:
    row = evaluate(tool, f"batch{len(truths)}_scan300_grey", pdf.name, m, pdf, None)
    if row.ok and row.pages == len(truths):
        rates = [cer_unordered(t, pdf_text(pdf, i + 1)) for i, t in enumerate(truths)]
        row.cer_unordered = sum(rates) / len(rates)
        row.cer = sum(cer(t, pdf_text(pdf, i + 1)) for i, t in enumerate(truths)) / len(truths)
    return row


# --------------------------------------------------------------------------------------------------
# Report


def summarise(rows: list[Row]) -> list[dict[str, Any]]:
    """Per kind and tool: means (CER, s/page, KB/page) and the maximum peak RSS; plus ours/anchor."""
    out: list[dict[str, Any]] = []
    kinds = list(dict.fromkeys(r.kind for r in rows))
    for kind in kinds:
        per: dict[str, dict[str, Any]] = {}
        for tool in ("ours", "anchor"):
            rs = [r for r in rows if r.kind == kind and r.tool == tool]
            ok = [r for r in rs if r.ok]
            if not rs:
                continue
            pages = sum(r.pages for r in ok)

            def mean(xs: list[float]) -> float | None:
                return sum(xs) / len(xs) if xs else None

            per[tool] = {
                "runs": len(rs),
                "failed": len(rs) - len(ok),
                "pages": pages,
                "cer_unordered": mean([r.cer_unordered for r in ok if r.cer_unordered is not None]),
                "cer": mean([r.cer for r in ok if r.cer is not None]),
                "worst": max(
                    ((r.cer_unordered, r.file) for r in ok if r.cer_unordered is not None), default=(None, None)
                ),
                "s_per_page": sum(r.wall_s for r in ok) / pages if pages else None,
                "kb_per_page": sum(r.kb_per_page * r.pages for r in ok) / pages if pages else None,
                "peak_tree_rss_mb": max((r.peak_tree_rss_mb for r in ok), default=None),
                "peak_tree_pss_mb": max((r.peak_tree_pss_mb for r in ok), default=None),
                "peak_single_rss_mb": max((r.peak_single_rss_mb for r in ok), default=None),
            }
        entry: dict[str, Any] = {"kind": kind, **per}
        if "ours" in per and "anchor" in per:
            entry["ratio_ours_over_anchor"] = {
                k: (per["ours"][k] / per["anchor"][k]) if per["ours"][k] and per["anchor"][k] else None
                for k in ("cer_unordered", "cer", "s_per_page", "kb_per_page", "peak_tree_rss_mb", "peak_tree_pss_mb")
            }
        out.append(entry)
    return out


def _f(v: float | None, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def markdown(summary: list[dict[str, Any]]) -> str:
    head = (
        "| kind | tool | pages | failed | CER (unordered) | worst page | CER (strict) | s/page | KB/page "
        "| peak RSS tree MB | peak PSS tree MB | peak RSS 1 proc MB |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for e in summary:
        for tool in ("ours", "anchor"):
            t = e.get(tool)
            if not t:
                continue
            lines.append(
                f"| {e['kind']} | {tool} | {t['pages']} | {t['failed']} | {_f(t['cer_unordered'], '.2%')} "
                f"| {_f(t['worst'][0], '.2%')} {t['worst'][1] or ''} | {_f(t['cer'], '.2%')} "
                f"| {_f(t['s_per_page'], '.2f')} | {_f(t['kb_per_page'], '.0f')} "
                f"| {_f(t['peak_tree_rss_mb'], '.0f')} | {_f(t['peak_tree_pss_mb'], '.0f')} "
                f"| {_f(t['peak_single_rss_mb'], '.0f')} |"
            )
        r = e.get("ratio_ours_over_anchor")
        if r:
            lines.append(
                f"| {e['kind']} | **ours/anchor** | | | {_f(r['cer_unordered'], '.2g')}× | "
                f"| {_f(r['cer'], '.2g')}× | {_f(r['s_per_page'], '.2f')}× | {_f(r['kb_per_page'], '.2f')}× "
                f"| {_f(r['peak_tree_rss_mb'], '.2f')}× | {_f(r['peak_tree_pss_mb'], '.2f')}× | |"
            )
    return head + "\n".join(lines) + "\n"


def _version(cmd: list[str]) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unavailable ({err})"
    text = (res.stdout or res.stderr).strip().splitlines()
    return text[0] if text else "?"


def environment(appliance: Sequence[str]) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "mem_total_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "tesseract": _version(["tesseract", "--version"]),
        "ocrmypdf": _version(["ocrmypdf", "--version"]),
        "pdftotext": _version(["pdftotext", "-v"]),
        "appliance_cmd": shlex.join(appliance),
        "caller_OMP_THREAD_LIMIT": os.environ.get("OMP_THREAD_LIMIT"),
        "loadavg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
    }


NOTES = [
    "Both tools: one fresh process per input document; text = pdftotext (default mode) of the output PDF.",
    "Headline CER = cer_unordered (reference lines aligned anywhere in the hypothesis, so reading order of "
    "side-by-side header/footer blocks is not counted); CER (strict) = Levenshtein on the whole text in "
    "reading order. Both on NFC, whitespace-collapsed text.",
    "s/page = process wall time / pages, including start-up, image loading and PDF writing.",
    "OCRmyPDF run as its users run it: its defaults plus -l vie --rotate-pages --deskew --output-type pdfa "
    "--jobs 1; the caller's OMP_THREAD_LIMIT is removed (OCRmyPDF then sets 1 Tesseract thread itself for "
    "one page at --jobs 1). Camera photos have no dpi: OCRmyPDF gets --image-dpi 300.",
    "OCRmyPDF converts the input image to PDF internally (img2pdf); that time is inside its wall time. "
    "In the optional anchor batch run the 20 images are joined with img2pdf first, which is not timed.",
    "Peak RSS: psutil polling every 20 ms of the process and all descendants; 'tree' = peak of the sum, "
    "'1 proc' = peak of the biggest single process. Spikes shorter than 20 ms can be missed.",
]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--pages", type=int, default=FIXED_SEEDS["pages"], help=f"inputs per kind (default {FIXED_SEEDS['pages']})"
    )
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--corpus", type=Path, default=None, help="use this corpus dir (manifest.json) as is")
    ap.add_argument("--seed", type=int, default=FIXED_SEEDS["seed_base"], help="corpus seed base")
    ap.add_argument("--batch", type=int, default=20, help="pages in the batch run of ours (0 = skip)")
    ap.add_argument("--batch-anchor", action="store_true", help="also run OCRmyPDF on the batch (slow)")
    ap.add_argument("--no-ours", action="store_true")
    ap.add_argument("--no-anchor", action="store_true")
    ap.add_argument("--workers", type=int, default=None, help="pass --workers to appliance digitize")
    ap.add_argument(
        "--appliance",
        default=shlex.join([sys.executable, "-m", "appliance"]),
        help="command that runs the appliance CLI (default: this python -m appliance)",
    )
    ap.add_argument("--dry-run", action="store_true", help="write the corpus and print the commands only")
    args = ap.parse_args(argv)
    appliance = shlex.split(args.appliance)
    tools = [t for t, off in (("ours", args.no_ours), ("anchor", args.no_anchor)) if not off]
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    if args.corpus:
        corpus = args.corpus
        manifest = json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))
        if args.kinds != list(KINDS):  # a real corpus may use kinds of its own
            manifest = [m for m in manifest if m["kind"] in args.kinds]
    else:
        corpus = out / "corpus"
        t0 = time.perf_counter()
        manifest = write_corpus(corpus, args.pages, args.kinds, args.seed)
        print(f"corpus: {len(manifest)} inputs in {corpus} ({time.perf_counter() - t0:.0f} s)", flush=True)

    if args.dry_run:
        for item in manifest:
            image = corpus / item["file"]
            print(shlex.join(ours_cmd(appliance, [image], out / "ours" / "x.pdf", is_photo(item), args.workers)))
            print(shlex.join(anchor_cmd(image, out / "anchor" / "x.pdf", item.get("dpi"))))
        return 0

    load_start = [round(x, 2) for x in os.getloadavg()]
    if load_start[0] > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {load_start[0]} at start; timings will be inflated", flush=True)
    rows = run_items(corpus, manifest, out, tools, appliance, args.workers)
    if args.batch and "ours" in tools:
        rows += run_batch(out, args.batch, appliance, args.workers, args.seed, args.batch_anchor and "anchor" in tools)
    summary = summarise(rows)
    table = markdown(summary)
    results = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment(appliance) | {"loadavg_1_5_15_at_start": load_start},
        "notes": NOTES,
        "summary": summary,
        "rows": [asdict(r) for r in rows],
    }
    (out / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    (out / "results.md").write_text(table + "\n" + "\n".join(f"- {n}" for n in NOTES) + "\n", encoding="utf-8")
    print()
    print(table)
    for n in NOTES:
        print(f"- {n}")
    print(f"\nresults: {out / 'results.json'}")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
