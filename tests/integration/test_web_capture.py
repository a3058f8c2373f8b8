"""Capture in the web UI through FastAPI's TestClient, with real tesseract: QR separator sheets split an
uploaded batch, one page replaced, the document camera (a UVC camera reading a video file), and the
page-by-page progress of a job."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from appliance import db, pipeline
from appliance.capture.uvc import UvcCamera
from appliance.originals import OriginalStore
from appliance.records import Separator
from appliance.settings import Settings, load_settings
from appliance.web.app import create_app
from appliance.web.auth import create_user
from appliance.web.jobs import Job, Jobs
from appliance.web.models import Role
from bench.corpus import render_page
from tests.integration.test_web import CODE, OFFICER_PW, login

pytestmark = [pytest.mark.tesseract, pytest.mark.slow]
DPI = 100


@pytest.fixture
def settings(tmp_path: Path, tesseract: str) -> Settings:
    return load_settings(data_dir=tmp_path / "data", ocr={"workers": 2})


def _app_client(settings: Settings, **kwargs: object) -> Iterator[TestClient]:
    app = create_app(settings, **kwargs)  # type: ignore[arg-type]
    with db.transaction(app.state.ctx.factory) as session:
        create_user(session, username="canbo", full_name="Nguyễn Thị Ánh", role=Role.OFFICER, password=OFFICER_PW)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    yield from _app_client(settings)


def _png(image: np.ndarray, dpi: int = DPI) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", dpi=(dpi, dpi))
    return buf.getvalue()


def separator_sheet(text: str = "TACH", dpi: int = DPI) -> np.ndarray:
    """A white A4 sheet with one large QR code in the middle."""
    import zxingcpp

    symbol = np.asarray(zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode).to_image(scale=8))
    symbol = symbol if symbol.ndim == 2 else symbol[..., 0]
    page = np.full((round(11.69 * dpi), round(8.27 * dpi)), 255, np.uint8)
    h, w = symbol.shape
    y, x = (page.shape[0] - h) // 2, (page.shape[1] - w) // 2
    page[y : y + h, x : x + w] = symbol
    return page


def _wait(job: Job) -> Job:
    for _ in range(1200):
        if not job.running:
            return job
        time.sleep(0.1)
    raise AssertionError("job did not end")


def _open(c: TestClient) -> str:
    csrf = login(c)
    assert c.post("/dossiers", data={"code": CODE, "csrf": csrf}, follow_redirects=False).status_code == 303
    return csrf


def _only_job(c: TestClient) -> Job:
    jobs = c.app.state.ctx.jobs.for_dossier(CODE)  # type: ignore[attr-defined]
    assert len(jobs) == 1
    return _wait(jobs[0])


def test_qr_separator_sheets_split_an_uploaded_batch(client: TestClient, settings: Settings) -> None:
    a, b, c = (render_page(seed=s, dpi=DPI)[0] for s in (1, 2, 4))
    sheets = [a, separator_sheet("TACH"), b, c, separator_sheet("TÁCH hồ sơ 2")]  # a trailing separator
    csrf = _open(client)
    files = [("files", (f"trang-{i}.png", _png(img), "image/png")) for i, img in enumerate(sheets, 1)]
    r = client.post(f"/dossiers/{CODE}/upload", data={"csrf": csrf}, files=files, follow_redirects=False)
    assert r.status_code == 303
    job = _only_job(client)
    assert job.state == "done", job.error
    assert job.marks == ["done", "separator", "done", "done", "separator"] or set(job.marks) <= {
        "done",
        "flagged",
        "separator",
    }
    assert [m == "separator" for m in job.marks] == [False, True, False, False, True]
    assert len(job.doc_ids) == 2
    store = OriginalStore(settings.originals_dir)
    digests = [store.put_image(np.asarray(Image.open(io.BytesIO(_png(img)))), dpi=DPI) for img in sheets]
    with db.transaction(client.app.state.ctx.factory) as session:  # type: ignore[attr-defined]
        docs = [session.get(db.Document, d) for d in job.doc_ids]
        assert all(d is not None and d.state == db.DocState.DIGITIZED for d in docs)
        pages = [[p.original_sha256 for p in d.pages] for d in docs if d is not None]
        assert pages == [[digests[0]], [digests[2], digests[3]]]  # the separators are in no document
        seps = session.query(Separator).filter_by(batch=job.id).order_by(Separator.position).all()
        assert [(s.position, s.text, s.original_sha256) for s in seps] == [
            (1, "TACH", digests[1]),
            (4, "TÁCH hồ sơ 2", digests[4]),
        ]
        assert seps[0].before_document_id == job.doc_ids[1] and seps[1].before_document_id is None
    fragment = client.get(f"/jobs/{job.id}").text
    assert fragment.count("Tờ phân cách") == 2 and fragment.count('class="open-doc"') == 2


def test_officer_splits_and_replaces_pages(client: TestClient, settings: Settings) -> None:
    a, b, c = (render_page(seed=s, dpi=DPI)[0] for s in (5, 6, 7))
    csrf = _open(client)
    files = [("files", (f"p{i}.png", _png(img), "image/png")) for i, img in enumerate((a, b, c), 1)]
    client.post(f"/dossiers/{CODE}/upload", data={"csrf": csrf}, files=files)
    job = _only_job(client)
    doc_id = job.doc_ids[0]
    factory = client.app.state.ctx.factory  # type: ignore[attr-defined]
    with db.transaction(factory) as session:
        doc = session.get(db.Document, doc_id)
        assert doc is not None
        ids = [p.id for p in doc.pages]
        shas = [p.original_sha256 for p in doc.pages]
    # replace page 2 by another upload: same place, new original, digitized again
    new_page = render_page(seed=9, dpi=DPI)[0]
    r = client.post(
        f"/documents/{doc_id}/replace/{ids[1]}",
        data={"csrf": csrf, "how": "file"},
        files=[("file", ("thay.png", _png(new_page), "image/png"))],
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    redo = [j for j in client.app.state.ctx.jobs.for_dossier(CODE) if j.what == "redo"]  # type: ignore[attr-defined]
    assert len(redo) == 1 and _wait(redo[0]).state == "done"
    with db.transaction(factory) as session:
        doc = session.get(db.Document, doc_id)
        assert doc is not None and doc.state == db.DocState.DIGITIZED
        assert [p.id for p in doc.pages] == ids
        now = [p.original_sha256 for p in doc.pages]
        assert now[0] == shas[0] and now[2] == shas[2] and now[1] not in shas
    # a bad replacement file is refused and changes nothing
    bad = client.post(
        f"/documents/{doc_id}/replace/{ids[1]}",
        data={"csrf": csrf, "how": "file"},
        files=[("file", ("x.exe", b"MZ", "application/octet-stream"))],
    )
    assert bad.status_code == 400 and "không phải ảnh hoặc PDF" in bad.text
    # split before page 3: two documents sharing the same originals, both digitized
    none = client.post(f"/documents/{doc_id}/split", data={"csrf": csrf})
    assert none.status_code == 400 and "Hãy chọn" in none.text
    r = client.post(f"/documents/{doc_id}/split", data={"csrf": csrf, "at": str(ids[2])}, follow_redirects=False)
    assert r.status_code == 303 and "ok=split" in r.headers["location"]
    split_job = client.app.state.ctx.jobs.get(r.headers["location"].split("#job-")[1])  # type: ignore[attr-defined]
    assert _wait(split_job).state == "done" and len(split_job.doc_ids) == 2
    with db.transaction(factory) as session:
        first, second = (session.get(db.Document, d) for d in split_job.doc_ids)
        assert first is not None and second is not None
        assert [p.original_sha256 for p in first.pages] == now[:2]
        assert [p.original_sha256 for p in second.pages] == now[2:]
        assert second.dossier_code == CODE and second.state == db.DocState.DIGITIZED and second.pdf_path


def desk_photo(page: np.ndarray, size: tuple[int, int] = (1200, 1600)) -> np.ndarray:
    """The page seen from above at a slight angle, on a dark desk, lit unevenly (RGB)."""
    w, h = size
    ph, pw = page.shape[:2]
    src = np.float32([[0, 0], [pw, 0], [pw, ph], [0, ph]])
    dst = np.float32([[0.12 * w, 0.08 * h], [0.9 * w, 0.11 * h], [0.86 * w, 0.93 * h], [0.1 * w, 0.9 * h]])
    matrix = cv2.getPerspectiveTransform(src, dst)
    rgb = page if page.ndim == 3 else cv2.cvtColor(page, cv2.COLOR_GRAY2RGB)
    desk = np.zeros((h, w, 3), np.uint8)
    desk[:] = (70, 52, 40)
    photo = cv2.warpPerspective(rgb, matrix, (w, h), dst=desk, borderMode=cv2.BORDER_TRANSPARENT)
    light = np.linspace(1.0, 0.8, w, dtype=np.float32)[None, :, None]
    return np.clip(photo.astype(np.float32) * light, 0, 255).astype(np.uint8)


def _camera_video(path: Path) -> Path:
    """A short video of a page photographed on a desk (what a UVC document camera streams)."""
    small = desk_photo(render_page(seed=8, dpi=150)[0])
    h, w = small.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (w, h))
    assert writer.isOpened()
    for _ in range(8):
        writer.write(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_document_camera_photo_goes_through_the_photo_path(settings: Settings, tmp_path: Path) -> None:
    camera = UvcCamera(str(_camera_video(tmp_path / "cam.avi")), dpi_hint=150, discard=1)
    try:
        for c in _app_client(settings, camera=camera):
            csrf = _open(c)
            page = c.get(f"/dossiers/{CODE}").text
            assert "Chụp bằng máy chụp tài liệu" in page
            r = c.post(f"/dossiers/{CODE}/camera", data={"csrf": csrf, "nonce": "cam-1"}, follow_redirects=False)
            assert r.status_code == 303
            job = _only_job(c)
            assert job.state == "done", job.error
            with db.transaction(c.app.state.ctx.factory) as session:  # type: ignore[attr-defined]
                doc = session.get(db.Document, job.doc_ids[0])
                assert doc is not None and doc.source == "camera" and doc.page_count == 1
                pdf_path = doc.pdf_path
            import pypdfium2 as pdfium

            assert pdf_path
            pdf = pdfium.PdfDocument(pdf_path)
            w, h = pdf[0].get_size()
            pdf.close()
            # the photo path found the sheet and rectified it to an A4-shaped page (the frame is 3:4)
            assert abs(h / w - 297 / 210) < 0.03, (w, h)
    finally:
        camera.close()


def test_progress_is_counted_page_by_page(client: TestClient) -> None:
    pages = [render_page(seed=s, dpi=DPI)[0] for s in (10, 11, 12)]
    csrf = _open(client)
    files = [("files", (f"p{i}.png", _png(img), "image/png")) for i, img in enumerate(pages, 1)]
    client.post(f"/dossiers/{CODE}/upload", data={"csrf": csrf}, files=files)
    job = _only_job(client)
    assert (job.pages_total, job.pages_done, len(job.page_seconds)) == (3, 3, 3)
    assert all(m in {"done", "flagged"} for m in job.marks)
    html = client.get(f"/jobs/{job.id}").text
    assert html.count("Đã nhận dạng") + html.count("Cần xem lại") == 3


def test_eta_counts_the_pages_still_to_recognise(settings: Settings) -> None:
    from appliance.pipeline import PipelineOptions

    jobs = Jobs(pipeline.storage(settings), PipelineOptions(workers=2))
    try:
        job = Job(id="j", dossier_code=None, what="scan", user="u", state="processing")
        job.pages_total, job.pages_done, job.page_seconds = 5, 1, [4.0, 2.0]
        job.last_page_at = time.monotonic()
        eta = jobs.eta_s(job)
        assert eta is not None and 11.0 < eta <= 12.0  # 4 pages x 3 s (the job's own pace)
        fresh = Job(id="k", dossier_code=None, what="scan", user="u", state="processing", pages_total=2)
        assert jobs.per_page_s(fresh) == jobs.seconds_per_page / 2  # no page yet: recent jobs' pace
        job.state = "done"
        assert jobs.eta_s(job) is None
    finally:
        jobs.shutdown()
