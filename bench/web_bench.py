"""Latency of the officers' main pages with a realistic archive (not a test).

Builds a throw-away data folder with N documents (default 2,000: 200 dossiers x 10 documents, each
with OCR-like Vietnamese text, two pages and reviewed fields), serves the real app with uvicorn on a
free loopback port (in this process), and drives it from a *second process* with C concurrent
"officers" (threads, keep-alive connections), each a bounded loop over: the dossier list, a dossier,
a document's review page, a search (with and without diacritics) and a page thumbnail (cached on
disk before the measured run, as after an officer's first view). Prints p50 / p95 / max per page.

    .venv/bin/python -m bench.web_bench --documents 2000 --officers 10 --rounds 30
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

_VOCABULARY = (
    "quyết định về việc công nhận hộ gia đình văn hóa năm giấy khai sinh đăng ký kết hôn xác nhận tình trạng "
    "hôn nhân ủy ban nhân dân xã chủ tịch căn cứ luật tổ chức chính quyền địa phương cấp bản sao trích lục "
    "hộ tịch chứng thực chữ ký người yêu cầu nơi cư trú thôn"
)
WORDS = tuple(_VOCABULARY.split(" "))
NAMES = ("Nguyễn Văn An", "Trần Thị Bình", "Lê Thị Hoa", "Phạm Văn Cường", "Hoàng Thị Dung", "Vũ Văn Em")


def _text(rng: random.Random, n: int = 350) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def seed(data_dir: Path, documents: int) -> tuple[str, list[str], list[str]]:
    """Fill the database; returns (session cookie token, dossier codes, document ids)."""
    from appliance import db
    from appliance.records import DocumentInfo, Dossier
    from appliance.settings import load_settings
    from appliance.textindex import fold
    from appliance.web.auth import create_user, start_session
    from appliance.web.models import Role

    settings = load_settings(data_dir=data_dir)
    engine = db.make_engine(settings.db_url)
    import appliance.web.models  # noqa: F401

    db.upgrade(engine)
    factory = db.session_factory(engine)
    rng = random.Random(7)
    sheet = _sheet(settings.originals_dir)
    codes: list[str] = []
    doc_ids: list[str] = []
    per_dossier = 10
    with db.transaction(factory) as session:
        user = create_user(session, username="canbo", full_name="Cán bộ", role=Role.OFFICER, password="x" * 12)
        token = start_session(session, user=user)
        for d in range(max(1, documents // per_dossier)):
            code = f"000.00.19.H12-2405{(d % 28) + 1:02d}-{d:04d}"
            owner = rng.choice(NAMES)
            session.add(Dossier(code=code, owner_name=owner, owner_id=f"0441900{d:05d}", backlog=False))
            codes.append(code)
            for k in range(per_dossier):
                pages = [(sheet, f"trang {p + 1}", 100.0) for p in range(2)]
                doc = db.create_document(session, source="scanner", pages=pages, dossier_code=code)
                doc.state = db.DocState.DIGITIZED
                text = _text(rng)
                fields = {"trich_yeu": " ".join(text.split()[:12]), "so_ky_hieu": f"{d * 10 + k}/QĐ-UBND"}
                session.add(
                    DocumentInfo(
                        document_id=doc.id,
                        kind="component",
                        fields=fields,
                        backlog=False,
                        text=text,
                        text_folded=fold(f"{code} {owner} {' '.join(fields.values())} {text}"),
                    )
                )
                doc_ids.append(doc.id)
    engine.dispose()
    return token, codes, doc_ids


def _sheet(originals: Path) -> str:
    """One real A4 page at 100 dpi in the originals store (every page shows it; thumbnails need it)."""
    import numpy as np

    from appliance.originals import OriginalStore

    image = np.full((1169, 827), 250, dtype=np.uint8)
    for row in range(120, 1050, 28):
        image[row : row + 9, 90:740] = 40
    return OriginalStore(originals).put_image(image, dpi=100.0)


THUMBNAILS = 100  # documents whose first-page thumbnail is requested (cached before the measured run)


def _get(conn: http.client.HTTPConnection, path: str, cookie: str) -> float:
    t = time.perf_counter()
    conn.request("GET", path, headers={"Cookie": f"sid={cookie}"})
    response = conn.getresponse()
    body = response.read()
    spent = time.perf_counter() - t
    if response.status != 200 or len(body) < 200:
        raise RuntimeError(f"GET {path} -> {response.status}")
    return spent


def drive(
    port: int,
    cookie: str,
    codes: list[str],
    doc_ids: list[str],
    officers: int,
    rounds: int,
    out: mp.Queue,  # type: ignore[type-arg]
) -> None:
    """The second process: `officers` threads, each `rounds` loops over the main pages."""
    results: dict[str, list[float]] = {}
    lock = threading.Lock()
    queries = ("quyet dinh cong nhan", "giấy khai sinh", "Lê Thị Hoa", "kết hôn xác nhận", "0007")

    def officer(i: int) -> None:
        rng = random.Random(i)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: dict[str, list[float]] = {}
        for r in range(rounds):
            plan = {
                "dossier list (/)": "/",
                "dossier page": f"/dossiers/{rng.choice(codes)}",
                "document review": f"/documents/{rng.choice(doc_ids)}",
                "search": "/search?q=" + queries[(i + r) % len(queries)].replace(" ", "+"),
                "page thumbnail": f"/documents/{rng.choice(doc_ids[:THUMBNAILS])}/pages/0.jpg?w=180",
            }
            for name, path in plan.items():
                from urllib.parse import quote

                mine.setdefault(name, []).append(_get(conn, quote(path, safe="/?=+&"), cookie))
        conn.close()
        with lock:
            for k, v in mine.items():
                results.setdefault(k, []).extend(v)

    threads = [threading.Thread(target=officer, args=(i,)) for i in range(officers)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out.put((results, time.perf_counter() - t))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--documents", type=int, default=2000)
    ap.add_argument("--officers", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args(argv)

    import logging

    import uvicorn

    from appliance.settings import load_settings
    from appliance.web.app import create_app

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="web-bench-") as tmp:
        data = Path(tmp) / "data"
        t = time.perf_counter()
        cookie, codes, doc_ids = seed(data, args.documents)
        print(f"seeded {len(doc_ids)} documents in {len(codes)} dossiers in {time.perf_counter() - t:.1f} s")
        app = create_app(load_settings(data_dir=data))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for doc_id in doc_ids[:THUMBNAILS]:  # thumbnails are rendered once, then served from the disk cache
            _get(warm, f"/documents/{doc_id}/pages/0.jpg?w=180", cookie)
        warm.close()
        ctx = mp.get_context("spawn")
        # warm-up (templates compiled, SQLite pages cached), then the measured run
        for rounds, measured in ((2, False), (args.rounds, True)):
            queue: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
            proc = ctx.Process(target=drive, args=(port, cookie, codes, doc_ids, args.officers, rounds, queue))
            proc.start()
            results, wall = queue.get()
            proc.join()
            if not measured:
                continue
            total = sum(len(v) for v in results.values())
            print(
                f"{args.officers} concurrent officers, {total} requests in {wall:.1f} s "
                f"({total / wall:.0f} req/s), archive of {len(doc_ids)} documents"
            )
            print(f"{'page':<20} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
            for name, values in results.items():
                print(
                    f"{name:<20} {len(values):>5} {statistics.median(values) * 1000:>8.1f} "
                    f"{_pct(values, 0.95) * 1000:>8.1f} {max(values) * 1000:>8.1f}"
                )
        server.should_exit = True
        thread.join(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
