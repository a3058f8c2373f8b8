"""Memory budget of capture (issue 11): peak RSS of the web service while a long PDF is uploaded and
digitized, and the latency other officers see meanwhile.

A real `appliance serve` (a subprocess, upload only, its own data directory) is signed into by two
officers. Officer A uploads an N-page PDF (default 80 A4 pages of Vietnamese text, rendered by the
service at 300 dpi) and the bench waits until the job has digitized it; meanwhile officer B, on a second
connection, keeps opening a document page, its page image and a search. The RSS of the service's process
tree (the service and its tesseract children, from /proc, every 50 ms) is sampled throughout.

    .venv/bin/python -m bench.capture_memory --pages 80

Targets (issue 11): peak RSS <= 400 MB, officer B's pages under 300 ms at the 95th percentile.
Results go to bench/out/capture_memory.json (with the service's and the children's share at the tree's
peak) and are printed as a table; every sample (seconds, tree MB, service MB) goes to
bench/out/capture_memory_samples.csv.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

from bench.corpus import REGULAR, render_page

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
CODE = "000.00.19.H12-251126-0001"
PASSWORD = "mat-khau-bench-1"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

LINES = (
    "ỦY BAN NHÂN DÂN XÃ ĐỒNG HỚI",
    "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM — Độc lập - Tự do - Hạnh phúc",
    "QUYẾT ĐỊNH về việc công nhận gia đình văn hóa năm 2025",
    "Căn cứ Luật Tổ chức chính quyền địa phương ngày 16 tháng 6 năm 2025;",
    "Căn cứ Nghị định số 118/2025/NĐ-CP về thực hiện thủ tục hành chính theo cơ chế một cửa;",
    "Xét đề nghị của công chức Văn hóa - Xã hội, Chủ tịch Ủy ban nhân dân xã quyết định:",
    "Điều 1. Công nhận hộ gia đình ông Nguyễn Văn An, thôn Bắc Lý, đạt danh hiệu gia đình văn hóa.",
    "Điều 2. Quyết định này có hiệu lực kể từ ngày ký. Văn phòng Ủy ban nhân dân xã chịu trách nhiệm thi hành.",
    "Nơi nhận: như Điều 2; lưu VT. TM. ỦY BAN NHÂN DÂN — CHỦ TỊCH — Trần Thị Bình",
)


def make_pdf(path: Path, pages: int, *, blank: bool = False) -> Path:
    """An A4 PDF of vector Vietnamese text (the service renders each page), or of blank pages."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(TTFont("Serif", str(REGULAR)))
    rng = random.Random(11)
    c = canvas.Canvas(str(path), pagesize=A4)
    for n in range(pages):
        if not blank:
            c.setFont("Serif", 12)
            y = 780.0
            for k in range(34):
                c.drawString(60, y, f"{rng.choice(LINES)} ({n + 1}.{k + 1})"[:95])
                y -= 21
        c.showPage()
    c.save()
    return path


def _png(seed: int) -> bytes:
    from PIL import Image

    image, *_rest = render_page(seed=seed, dpi=300)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", dpi=(300, 300))
    return buf.getvalue()


# --- the service and its memory ------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def _descendants(root: int) -> list[int]:
    kids, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.extend(kids.get(pid, []))
        todo.extend(kids.get(pid, []))
    return out


def tree_rss(root: int) -> tuple[int, int]:
    """(RSS of the process tree, RSS of the root alone) in bytes."""
    kids = _children()
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += _rss(pid)
        todo.extend(kids.get(pid, []))
    return total, _rss(root)


@dataclass
class Sampler:
    pid: int
    every_s: float = 0.05
    peak_tree: int = 0
    peak_main: int = 0
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    at_peak: tuple[int, int] = (0, 0)  # (service RSS, children) when the tree peaked
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            tree, main = tree_rss(self.pid)
            if tree > self.peak_tree:
                self.at_peak = (main, len(_descendants(self.pid)))
            self.peak_tree, self.peak_main = max(self.peak_tree, tree), max(self.peak_main, main)
            self.samples.append((time.monotonic() - start, tree, main))
            time.sleep(self.every_s)

    def reset(self) -> None:
        self.peak_tree = self.peak_main = 0
        self.at_peak = (0, 0)

    def stop(self) -> None:
        self._stop.set()


def start_service(data_dir: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "APPLIANCE_DATA_DIR": str(data_dir),
        "APPLIANCE_LOG_FORMAT": "text",
        "APPLIANCE_OCR__WORKERS": str(workers),
        "APPLIANCE_STORAGE__MIN_FREE_MB": "0",
    }
    env.pop("APPLIANCE_CONFIG", None)
    appliance = [sys.executable, "-m", "appliance"]
    for user in ("canbo", "canbo2"):
        subprocess.run([*appliance, "user", user], input=f"{PASSWORD}\n".encode(), env=env, check=True)
    log = (data_dir / "serve.log").open("wb")
    proc = subprocess.Popen([*appliance, "serve", "--no-scanner", "--port", str(port)], env=env, stdout=log, stderr=log)
    for _ in range(300):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("appliance serve did not start; see " + str(data_dir / "serve.log"))


# --- officers ------------------------------------------------------------------------------------------
def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    if not m:
        raise RuntimeError("no CSRF field")
    return m.group(1)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    text: str


class Browser:
    """One officer's keep-alive connection with its cookies (stdlib only)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes = b"", content_type: str = "") -> Response:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if content_type:
            headers["Content-Type"] = content_type
        self.conn.request(method, path, body=body or None, headers=headers)
        r = self.conn.getresponse()
        text = r.read().decode("utf-8", "replace")
        for value in r.headers.get_all("Set-Cookie") or []:
            jar = SimpleCookie()
            jar.load(value)
            for key, morsel in jar.items():
                if morsel["max-age"] == "0" or not morsel.value or morsel.value == '""':
                    self.cookies.pop(key, None)
                else:
                    self.cookies[key] = morsel.value
        return Response(r.status, {k.lower(): v for k, v in r.headers.items()}, text)

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, data: dict[str, str], files: Sequence[tuple[str, str, bytes, str]] = ()) -> Response:
        if not files:
            return self.request("POST", path, urlencode(data).encode(), "application/x-www-form-urlencoded")
        boundary = os.urandom(12).hex()
        parts: list[bytes] = []
        for key, value in data.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
        for key, name, blob, mime in files:
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"; filename="{name}"\r\n'
            parts.append(f"{head}Content-Type: {mime}\r\n\r\n".encode() + blob + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        return self.request("POST", path, b"".join(parts), f"multipart/form-data; boundary={boundary}")

    def close(self) -> None:
        self.conn.close()


def sign_in(port: int, user: str) -> tuple[Browser, str]:
    c = Browser(port)
    token = _csrf(c.get("/login").text)
    r = c.post("/login", {"username": user, "password": PASSWORD, "csrf": token})
    if r.status != 303:
        raise RuntimeError(f"sign-in failed: {r.status}")
    return c, _csrf(c.get("/").text)


def upload(c: Browser, csrf: str, name: str, data: bytes, mime: str) -> tuple[str, float]:
    t = time.perf_counter()
    r = c.post(f"/dossiers/{CODE}/upload", {"csrf": csrf, "nonce": os.urandom(8).hex()}, [("files", name, data, mime)])
    spent = time.perf_counter() - t
    if r.status != 303 or "#job-" not in r.headers.get("location", ""):
        raise RuntimeError(f"upload refused: {r.status} {r.text[-300:]}")
    return r.headers["location"].rsplit("#job-", 1)[1], spent


def wait_job(c: Browser, job: str, timeout_s: float = 3600) -> str:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        r = c.get(f"/jobs/{job}")
        if "hx-trigger" in r.headers:
            return "done" if "Không thành công" not in r.text else "failed"
        time.sleep(1.0)
    raise RuntimeError("job did not end")


def other_officer(port: int, doc_id: str, stop: threading.Event, out: dict[str, list[float]]) -> None:
    c, _csrf_token = sign_in(port, "canbo2")
    plan = {
        "document page": f"/documents/{doc_id}",
        "page image": f"/documents/{doc_id}/pages/0.jpg?w=180",
        "search": "/search?q=quyet+dinh+van+hoa",
        "dossier page": f"/dossiers/{CODE}",
    }
    while not stop.is_set():
        for name, path in plan.items():
            t = time.perf_counter()
            r = c.get(path)
            spent = time.perf_counter() - t
            if r.status != 200:
                raise RuntimeError(f"GET {path} -> {r.status}")
            out.setdefault(name, []).append(spent * 1000)
            time.sleep(0.05)
    c.close()


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) >= 20 else max(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=80)
    parser.add_argument("--blank", action="store_true", help="blank pages (the issue's 18 KB 80-page PDF)")
    parser.add_argument("--workers", type=int, default=2, help="settings.ocr.workers of the service")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="capture-memory-"))
    pdf = make_pdf(tmp / "ho-so.pdf", args.pages, blank=args.blank)
    port = _free_port()
    proc = start_service(tmp / "data", port, args.workers)
    sampler = Sampler(proc.pid)
    threading.Thread(target=sampler.run, daemon=True).start()
    try:
        a, csrf = sign_in(port, "canbo")
        a.post("/dossiers", {"code": CODE, "csrf": csrf})
        seed_job, _ = upload(a, csrf, "mot-trang.png", _png(1), "image/png")
        if wait_job(a, seed_job) != "done":
            raise RuntimeError("the seed page was not digitized")
        doc_id = re.findall(r"/documents/([0-9a-f-]{32,36})", a.get(f"/dossiers/{CODE}").text)[0]
        time.sleep(1.0)
        idle_tree, idle_main = tree_rss(proc.pid)
        sampler.reset()

        latencies: dict[str, list[float]] = {}
        stop = threading.Event()
        officer = threading.Thread(target=other_officer, args=(port, doc_id, stop, latencies), daemon=True)
        officer.start()
        time.sleep(2.0)
        before = {k: list(v) for k, v in latencies.items()}
        started = time.perf_counter()
        job, upload_s = upload(a, csrf, pdf.name, pdf.read_bytes(), "application/pdf")
        state = wait_job(a, job)
        job_s = time.perf_counter() - started
        stop.set()
        officer.join(timeout=30)
        during = {k: v[len(before.get(k, [])) :] for k, v in latencies.items()}
    finally:
        sampler.stop()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    result = {
        "pages": args.pages,
        "blank": args.blank,
        "pdf_bytes": pdf.stat().st_size,
        "workers": args.workers,
        "job": state,
        "upload_request_s": round(upload_s, 3),
        "upload_and_digitize_s": round(job_s, 1),
        "idle_rss_mb": {"tree": round(idle_tree / 2**20), "service": round(idle_main / 2**20)},
        "peak_rss_mb": {"tree": round(sampler.peak_tree / 2**20), "service": round(sampler.peak_main / 2**20)},
        "at_tree_peak": {
            "service_mb": round(sampler.at_peak[0] / 2**20),
            "children_mb": round((sampler.peak_tree - sampler.at_peak[0]) / 2**20),
            "children": sampler.at_peak[1],
        },
        "other_officer_ms": {
            name: {
                "n": len(v),
                "p50": round(statistics.median(v), 1),
                "p95": round(_p95(v), 1),
                "max": round(max(v), 1),
            }
            for name, v in during.items()
            if v
        },
        "load_average": os.getloadavg(),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "capture_memory.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    with (OUT / "capture_memory_samples.csv").open("w") as f:  # seconds, tree MB, service MB
        f.writelines(f"{t:.2f},{tree / 2**20:.1f},{main / 2**20:.1f}\n" for t, tree, main in sampler.samples)
    say = sys.stdout.write
    say(f"{args.pages}-page PDF ({result['pdf_bytes'] // 1024} KB), job {state} in {job_s:.0f} s, ")
    say(f"upload request {upload_s:.2f} s\n")
    say(f"RSS idle {result['idle_rss_mb']}, peak {result['peak_rss_mb']} (MB; tree = service + tesseract)\n")
    say(f"at the tree's peak: {result['at_tree_peak']}\n")
    say("other officer meanwhile (ms): page  n  p50  p95  max\n")
    rows: dict[str, dict[str, float]] = result["other_officer_ms"]  # type: ignore[assignment]
    for name, row in rows.items():
        say(f"  {name:14} {row['n']:4} {row['p50']:7} {row['p95']:7} {row['max']:7}\n")
    ok = sampler.peak_tree <= 400 * 2**20 and all(row["p95"] < 300 for row in rows.values())
    say(f"targets (peak <= 400 MB, p95 < 300 ms): {'met' if ok else 'NOT met'}\n")
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        say(f"data kept in {tmp}\n")
    return 0 if ok and state == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
