"""The web service killed (SIGKILL, as a power cut would) while it digitizes a 10-page upload, then started
again the documented way (`appliance serve`): the document finishes by itself, without any command, and is
searchable. The service runs as a real subprocess sharing its SQLite database with the test."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from PIL import Image, ImageDraw, ImageFont

from appliance import db
from appliance.records import Intake
from appliance.settings import load_settings
from appliance.textindex import fold
from appliance.web.auth import create_user
from appliance.web.models import Role
from tests.integration.test_web import CODE, OFFICER_PW

pytestmark = [pytest.mark.tesseract, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
DPI = 150
A4 = (round(8.27 * DPI), round(11.69 * DPI))
# one phrase per page, found on no other page (page 7 is the one searched for)
PHRASES = (
    "chứng thực bản sao",
    "đăng ký hộ tịch",
    "giấy khai sinh",
    "đăng ký kết hôn",
    "cấp giấy phép",
    "xác nhận cư trú",
    "thừa kế quyền sử dụng đất",
    "nhận nuôi con nuôi",
    "trích lục bản án",
    "hòa giải tranh chấp",
)
PAGE7 = "thừa kế"


def ten_page_pdf() -> bytes:
    """One 10-page PDF: A4 at 150 dpi, grey, a few Vietnamese lines per page."""
    title = ImageFont.truetype(str(FONT), 44)
    body = ImageFont.truetype(str(FONT), 34)
    pages = []
    for n, phrase in enumerate(PHRASES, 1):
        page = Image.new("L", A4, 248)
        draw = ImageDraw.Draw(page)
        draw.text((120, 160), "ỦY BAN NHÂN DÂN XÃ", font=title, fill=20)
        draw.text((120, 320), f"Trang {n}: {phrase}", font=body, fill=25)
        draw.text((120, 400), "Người nộp hồ sơ ký tên", font=body, fill=25)
        pages.append(page)
    buf = io.BytesIO()
    pages[0].save(buf, format="PDF", save_all=True, append_images=pages[1:], resolution=DPI)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """`appliance serve --no-scanner` as its own process group (so tesseract children die with it)."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = os.environ | {
            "APPLIANCE_CONFIG": str(data_dir.parent / "appliance.toml"),  # never the system's file
            "APPLIANCE_DATA_DIR": str(data_dir),
            "APPLIANCE_OCR__WORKERS": "1",
            "APPLIANCE_LOG_FORMAT": "text",
        }
        (data_dir.parent / "appliance.toml").write_text("")

    def start(self, timeout: float = 30.0) -> None:
        cmd = [str(PYTHON), "-m", "appliance", "serve", "--no-scanner", "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the service exited:\n{self.log.read_text()}"
            try:
                if httpx.get(f"{self.url}/login", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the service did not answer /login in {timeout} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL to the whole process group: nothing gets to clean up, as in a power cut."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def service(tmp_path: Path, tesseract: str) -> Iterator[Service]:
    if not PYTHON.exists():
        pytest.skip(f"no venv at {PYTHON}")
    data_dir = tmp_path / "data"
    settings = load_settings(data_dir=data_dir)
    engine = db.make_engine(settings.db_url)
    db.upgrade(engine)
    with db.transaction(db.session_factory(engine)) as session:
        create_user(session, username="canbo", full_name="Nguyễn Thị Ánh", role=Role.OFFICER, password=OFFICER_PW)
    engine.dispose()
    svc = Service(data_dir, tmp_path / "service.log")
    try:
        yield svc
    finally:
        svc.kill()


def query(data_dir: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    """Read the service's database (read-only, WAL: never blocks the service)."""
    con = sqlite3.connect(f"file:{data_dir / 'appliance.db'}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def wait_for(what: str, check: Callable[[], bool], timeout: float, log: Path) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s\n{log.read_text()[-4000:]}")


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def sign_in_and_upload(svc: Service) -> tuple[httpx.Client, str]:
    """Sign in, open the dossier and upload the 10-page PDF; returns the client and the intake (job) id."""
    client = httpx.Client(base_url=svc.url, timeout=30)
    token = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"username": "canbo", "password": OFFICER_PW, "csrf": token})
    assert r.status_code == 303, r.text
    csrf = csrf_of(client.get("/").text)
    r = client.post("/dossiers", data={"code": CODE, "csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == f"/dossiers/{CODE}", r.text
    r = client.post(
        f"/dossiers/{CODE}/upload",
        data={"csrf": csrf, "nonce": "restart-1"},
        files=[("files", ("ho-so-10-trang.pdf", ten_page_pdf(), "application/pdf"))],
    )
    assert r.status_code == 303, r.text
    m = re.fullmatch(rf"/dossiers/{re.escape(CODE)}#job-([0-9a-f]{{32}})", r.headers["location"])
    assert m, r.headers["location"]
    return client, m.group(1)


def documents(data_dir: Path) -> list[tuple[str, str, int]]:
    rows = query(data_dir, "SELECT id, state, page_count FROM documents WHERE dossier_code = ?", CODE)
    return [(str(i), str(s), int(str(n))) for i, s, n in rows]


def intake_state(data_dir: Path, intake_id: str) -> str | None:
    rows = query(data_dir, "SELECT state FROM intakes WHERE id = ?", intake_id)
    return str(rows[0][0]) if rows else None


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*")) if folder.exists() else []


def test_killed_during_ocr_the_document_finishes_after_a_plain_restart(service: Service) -> None:
    data_dir = service.data_dir
    service.start()
    client, intake_id = sign_in_and_upload(service)
    # recorded as a document, its pages being recognised (one tesseract at a time): pull the plug now
    wait_for("document recorded", lambda: len(documents(data_dir)) == 1, 30, service.log)
    service.kill()

    [(doc_id, state, pages)] = documents(data_dir)
    assert state == "captured" and pages == 10, "the kill must land before the document is digitized"
    assert intake_state(data_dir, intake_id) == "done"
    actions = [str(a) for (a,) in query(data_dir, "SELECT action FROM audit_events WHERE document_id = ?", doc_id)]
    assert actions == ["capture"]
    assert not (data_dir / "documents" / f"{doc_id}.pdf").exists()

    # started again exactly as before; from here on only pages are read
    service.start()
    wait_for(
        "document digitized after the restart",
        lambda: documents(data_dir) == [(doc_id, "digitized", 10)],
        60,
        service.log,
    )

    for q in (PAGE7, fold(PAGE7)):
        page = client.get("/search", params={"q": q})
        assert page.status_code == 200
        assert f"/documents/{doc_id}" in page.text, q
    assert "0 kết quả" in client.get("/search", params={"q": "khongcotrongtailieu"}).text

    page = client.get(f"/documents/{doc_id}")
    assert page.status_code == 200
    assert re.findall(r"<span>Trang (\d+)</span>", page.text) == [str(n) for n in range(1, 11)]
    assert f"/documents/{doc_id}/pdf" in page.text
    assert (data_dir / "documents" / f"{doc_id}.pdf").exists()

    trail = query(data_dir, "SELECT action, actor FROM audit_events WHERE document_id = ? ORDER BY id", doc_id)
    assert trail == [("capture", "canbo"), ("digitized", "system")], trail
    client.close()


def test_killed_right_after_the_upload_no_files_are_left_behind(service: Service) -> None:
    data_dir = service.data_dir
    service.start()
    client, intake_id = sign_in_and_upload(service)
    service.kill()  # at once: the job is still decoding the PDF

    assert leftovers(data_dir / "uploads") == [], "the request's temporary files are gone once it has answered"
    assert intake_state(data_dir, intake_id) == "pending", "the kill must land before the intake is recorded"
    assert documents(data_dir) == []
    assert [p.name for p in leftovers(data_dir / "intake" / intake_id)] == ["000.pdf"]

    service.start()
    wait_for(
        "document digitized after the restart",
        lambda: [s for _i, s, _n in documents(data_dir)] == ["digitized"],
        60,
        service.log,
    )
    [(doc_id, _state, pages)] = documents(data_dir)
    assert pages == 10
    assert intake_state(data_dir, intake_id) == "done"
    assert leftovers(data_dir / "intake") == [], "the intake folder is removed once its documents are recorded"
    assert leftovers(data_dir / "uploads") == []
    assert f"/documents/{doc_id}" in client.get("/search", params={"q": fold(PAGE7)}).text
    client.close()


def test_a_restart_removes_files_that_kills_at_other_moments_left(service: Service) -> None:
    """What a kill leaves at the instants too short to hit from a test: inside the request while it stores
    the files, between moving them into the intake folder and recording the intake, and between recording
    the documents and removing the intake folder. The restart removes all of it and keeps pending work."""
    data_dir = service.data_dir
    stored = data_dir / "uploads" / "upload-k1ll3d"
    stored.mkdir(parents=True)
    (stored / "000.pdf").write_bytes(ten_page_pdf()[:5000])
    orphan, done = data_dir / "intake" / ("a" * 32), data_dir / "intake" / ("b" * 32)
    for folder in (orphan, done):
        folder.mkdir(parents=True)
        (folder / "000.pdf").write_bytes(b"%PDF-1.4 left over")
    engine = db.make_engine(f"sqlite:///{data_dir / 'appliance.db'}")
    with db.transaction(db.session_factory(engine)) as session:
        session.add(Intake(id=done.name, folder=str(done), files=[["a.pdf", "000.pdf"]], actor="canbo", state="done"))
    engine.dispose()

    service.start()
    wait_for(
        "leftovers removed",
        lambda: not leftovers(data_dir / "uploads") and not leftovers(data_dir / "intake"),
        20,
        service.log,
    )
    assert intake_state(data_dir, done.name) == "done"
