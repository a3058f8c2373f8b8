"""Budgets of the web service (issue 11, items 3 and 9), through FastAPI's TestClient.

Pages: a request holds at most ``capture.max_pages`` pages; the receipt's QR is read from its first pages
only. Disk: on a real small filesystem (a tmpfs mounted for the test, data_dir on it, filled up) new
captures are refused with one sentence below the free-space floor, reading, searching and sign-in still
work (also at 0 bytes free), and a write failing mid-way (ENOSPC) leaves no partial file, no orphan
original and no claim of kept pages."""

from __future__ import annotations

import contextlib
import io
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pypdfium2 as pdfium
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from appliance import db, diskspace, pipeline, records
from appliance.capture import files
from appliance.errors import DiskFull
from appliance.messages_vi import MESSAGES_VI
from appliance.originals import encode_png
from appliance.settings import Settings, load_settings
from appliance.web.app import create_app
from appliance.web.auth import create_user
from appliance.web.jobs import Job
from appliance.web.models import Role
from appliance.workflow import Actor
from bench.corpus import render_page
from tests.conftest import IN_CI
from tests.faults import text_pdf
from tests.integration.test_web import CODE, OFFICER_PW, _csrf, login

DISK_FULL = MESSAGES_VI["disk_full"]
MB = 1024 * 1024


def _client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with db.transaction(app.state.ctx.factory) as session:
        create_user(session, username="canbo", full_name="Nguyễn Thị Ánh", role=Role.OFFICER, password=OFFICER_PW)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _open(c: TestClient) -> str:
    csrf = login(c)
    assert c.post("/dossiers", data={"code": CODE, "csrf": csrf}, follow_redirects=False).status_code == 303
    return csrf


def _upload(c: TestClient, csrf: str, name: str, data: bytes, mime: str = "application/pdf") -> Any:
    return c.post(
        f"/dossiers/{CODE}/upload",
        data={"csrf": csrf},
        files=[("files", (name, data, mime))],
        follow_redirects=False,
    )


def _wait(job: Job) -> Job:
    for _ in range(1200):
        if not job.running:
            return job
        time.sleep(0.1)
    raise AssertionError("job did not end")


def _jobs(c: TestClient) -> list[Job]:
    return c.app.state.ctx.jobs.for_dossier(CODE)  # type: ignore[attr-defined,no-any-return]


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _count(settings: Settings, table: Any) -> int:
    factory = db.session_factory(db.make_engine(settings.db_url))
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


# --- the page budget ----------------------------------------------------------------------------------------
def test_an_upload_over_the_page_budget_is_refused_before_anything_is_recorded(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data", capture={"max_pages": 3})
    for c in _client(settings):
        csrf = _open(c)
        r = _upload(c, csrf, "dai.pdf", text_pdf(tmp_path / "dai.pdf", pages=5).read_bytes())
        assert r.status_code == 400
        assert "tối đa 3 trang" in r.text
        assert _jobs(c) == []
        assert _files_under(settings.data_dir / "uploads") == []
        assert _files_under(settings.data_dir / "intake") == []
        assert _count(settings, records.Intake) == 0


def test_the_receipt_is_read_from_its_first_pages_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rendered: list[int] = []
    real = pdfium.PdfPage.render

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        rendered.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pdfium.PdfPage, "render", counted)
    settings = load_settings(data_dir=tmp_path / "data")
    for c in _client(settings):
        csrf = login(c)
        pdf = text_pdf(tmp_path / "bien-nhan.pdf", pages=80).read_bytes()
        r = c.post(
            "/dossiers/receipt", data={"csrf": csrf}, files=[("receipt", ("bien-nhan.pdf", pdf, "application/pdf"))]
        )
        assert r.status_code == 400 and "Không đọc được mã QR" in r.text
        assert len(rendered) == 3  # of 80 pages
        assert _files_under(settings.data_dir / "uploads") == []


# --- disk full: a real small filesystem ---------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 32 MB tmpfs mounted for this test (we run as root here); unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        (pytest.fail if IN_CI else pytest.skip)(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, *, leave: int) -> Path:
    """Write a filler file until ``leave`` bytes are free (0: until the filesystem refuses)."""
    filler = disk / f"filler-{time.monotonic_ns()}"
    with filler.open("wb") as out:
        while (free := diskspace.free_bytes(disk)) > leave:
            try:
                out.write(b"\xa5" * min(MB, max(4096, free - leave)))
                out.flush()
            except OSError:
                break
    return filler


def _page_png(seed: int = 1) -> bytes:
    image = render_page(seed=seed, dpi=100)[0]
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", dpi=(100, 100))
    return buf.getvalue()


def _disk_settings(disk: Path, **storage: int) -> Settings:
    return load_settings(data_dir=disk / "data", ocr={"workers": 1}, storage=storage)


@pytest.mark.tesseract
@pytest.mark.slow
def test_below_the_floor_captures_are_refused_and_the_rest_works(small_disk: Path, tesseract: str) -> None:
    settings = _disk_settings(small_disk, min_free_mb=8, reserve_mb=2)
    for c in _client(settings):
        csrf = _open(c)
        assert _upload(c, csrf, "trang.png", _page_png(), "image/png").status_code == 303
        (job,) = _jobs(c)
        doc_id = _wait(job).doc_id
        assert job.state == "done" and doc_id
        originals = _files_under(settings.originals_dir)

        fill(small_disk, leave=4 * MB)  # below the 8 MB floor

        r = _upload(c, csrf, "trang-2.png", _page_png(2), "image/png")
        assert r.status_code == 507 and DISK_FULL in r.text
        r = c.post(f"/dossiers/{CODE}/scan", data={"csrf": csrf, "preset": "a4-grey"}, follow_redirects=False)
        assert r.status_code == 507 and DISK_FULL in r.text
        with db.transaction(c.app.state.ctx.factory) as session:  # type: ignore[attr-defined]
            page_id = session.scalars(select(db.Page.id).where(db.Page.document_id == doc_id)).first()
        r = c.post(
            f"/documents/{doc_id}/replace/{page_id}",
            data={"csrf": csrf, "how": "file"},
            files=[("file", ("thay.png", _page_png(3), "image/png"))],
            follow_redirects=False,
        )
        assert r.status_code == 507 and DISK_FULL in r.text
        assert len(_jobs(c)) == 1  # no new job
        assert _files_under(settings.data_dir / "uploads") == []
        assert _files_under(settings.data_dir / "intake") == []
        assert _files_under(settings.originals_dir) == originals

        # what exists is still read, searched and shown; the officer can sign out and in again
        assert c.get(f"/documents/{doc_id}").status_code == 200
        assert c.get(f"/documents/{doc_id}/pages/0.jpg").status_code == 200
        assert c.get(f"/dossiers/{CODE}").status_code == 200
        assert c.get("/search", params={"q": "Quyết định"}).status_code == 200
        assert c.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
        login(c)


def test_sign_in_works_when_the_disk_is_completely_full(small_disk: Path) -> None:
    settings = _disk_settings(small_disk, min_free_mb=4, reserve_mb=2)
    for c in _client(settings):
        assert diskspace.reserve_path(settings).exists()  # kept at start-up, while there was room
        fill(small_disk, leave=0)
        assert diskspace.free_bytes(small_disk) < 64 * 1024
        # sign-in writes the attempt and the session: the spare file is given back for them
        token = _csrf(c.get("/login").text)
        r = c.post("/login", data={"username": "canbo", "password": OFFICER_PW, "csrf": token}, follow_redirects=False)
        assert r.status_code == 303, r.text
        assert not diskspace.reserve_path(settings).exists()
        csrf = _csrf(c.get("/").text)
        assert c.post("/dossiers", data={"code": CODE, "csrf": csrf}, follow_redirects=False).status_code == 303
        r = _upload(c, csrf, "trang.png", _page_png(), "image/png")
        assert r.status_code == 507 and DISK_FULL in r.text
        assert _files_under(settings.data_dir / "uploads") == []


def test_an_upload_that_meets_a_full_disk_leaves_no_partial_file(small_disk: Path) -> None:
    settings = _disk_settings(small_disk, min_free_mb=0, reserve_mb=0)  # no floor: the write itself fails
    for c in _client(settings):
        csrf = _open(c)
        fill(small_disk, leave=512 * 1024)
        big = np.random.default_rng(5).integers(0, 256, size=(1200, 1000), dtype=np.uint8)  # ~1.2 MB as PNG
        r = _upload(c, csrf, "lon.png", encode_png(big, dpi=100), "image/png")
        assert r.status_code == 507 and DISK_FULL in r.text
        assert _files_under(settings.data_dir / "uploads") == []
        assert _files_under(settings.data_dir / "intake") == []
        assert _jobs(c) == []


def _noise_pdf(path: Path, pages: int = 3) -> Path:
    rng = np.random.default_rng(7)
    images = [Image.fromarray(rng.integers(0, 256, size=(1100, 800), dtype=np.uint8)) for _ in range(pages)]
    images[0].save(path, "PDF", save_all=True, append_images=images[1:], resolution=100, quality=20)
    return path


def test_originals_failing_mid_way_leave_no_orphan_and_claim_no_kept_page(small_disk: Path, tmp_path: Path) -> None:
    settings = _disk_settings(small_disk, min_free_mb=0, reserve_mb=0)
    pdf = _noise_pdf(tmp_path / "nhieu.pdf")
    originals = [len(encode_png(p.image, dpi=p.dpi)) for p in files.load_file(pdf)]
    for c in _client(settings):
        csrf = _open(c)
        # room for the upload, the first page's original and a little database, not the second original
        fill(small_disk, leave=pdf.stat().st_size + originals[0] + originals[1] // 2 + 64 * 1024)
        r = _upload(c, csrf, "nhieu.pdf", pdf.read_bytes())
        assert r.status_code == 303, r.text
        (job,) = _jobs(c)
        _wait(job)
        assert job.state == "failed" and job.error == DISK_FULL
        assert job.kept_pages == 0 and job.doc_ids == []
        page = c.get(f"/dossiers/{CODE}")
        assert "Đã giữ" not in page.text  # no page is said to be kept
        assert _files_under(settings.originals_dir) == []  # the first page's original was taken back
        assert _files_under(settings.data_dir / "intake") == []
        assert _files_under(settings.data_dir / "uploads") == []
        assert _count(settings, db.Document) == 0
        with contextlib.suppress(FileNotFoundError):
            (small_disk / "filler").unlink()


def test_an_intake_refused_by_the_floor_waits_complete_for_room(small_disk: Path, tmp_path: Path) -> None:
    """An upload recorded before the disk went below the floor (a restart's resume meets it there) is not
    thrown away: it stays pending with its files and is taken once there is room again."""
    settings = _disk_settings(small_disk, min_free_mb=8, reserve_mb=0)
    store = pipeline.storage(settings)
    source = tmp_path / "trang.png"
    source.write_bytes(_page_png())
    intake = pipeline.receive_files(
        store, [("trang.png", source)], actor=Actor("canbo", "Nguyễn Thị Ánh"), dossier_code=None
    )
    filler = fill(small_disk, leave=4 * MB)
    with pytest.raises(DiskFull):
        pipeline.capture_intake(store, intake)
    with db.transaction(store.factory) as session:
        row = session.get(records.Intake, intake)
        assert row is not None and row.state == "pending"
        folder = Path(row.folder)
    assert _files_under(folder) and _files_under(settings.originals_dir) == []
    filler.unlink()
    done = pipeline.capture_intake(store, intake)
    assert len(done.document_ids) == 1 and not folder.exists()
