"""The counter workflow in a real browser: Debian's headless Chromium driven by Playwright, against
uvicorn on a free loopback port, with the SANE test scanner, real tesseract and a SoftHSM2 token.

Screenshots (1366x768) go to test-artifacts/e2e/; with DOCS_SCREENSHOTS=1 they are also copied to
docs/img/ for the officers' guide (docs/huong-dan-can-bo.md), so the guide shows the real UI.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import need
from tests.mqtt import Broker, Pki, Running, broker, pki, receiver_config  # noqa: F401 - fixtures
from tests.softhsm import OFFICER, ORGANISATION, SoftToken, ca_sha256, make_token, shared_token  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.sane, pytest.mark.tesseract]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
DOCS_IMG = ROOT / "docs" / "img"
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
CODE = "000.00.19.H12-240517-0042"
CODE2 = "000.00.19.H12-240518-0043"
WAIT_MS = 120_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(
    tmp_path: Path,
    sane_env: Path,
    tesseract: str,
    shared_token: SoftToken,  # noqa: F811
    broker: Broker,  # noqa: F811
    pki: Pki,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, str]]:
    need("chromium")
    # a token of its own: the test types a wrong PIN once
    hsm = make_token(tmp_path / "hsm", (OFFICER, ORGANISATION), ca=shared_token.ca)
    monkeypatch.setenv("SOFTHSM2_CONF", str(hsm.conf))
    import uvicorn

    from appliance.capture.sane import SaneScanner
    from appliance.settings import load_settings
    from appliance.web.app import create_app
    from appliance.web.commands import dev_accounts

    client = pki.clients["box-001"]
    settings = load_settings(
        data_dir=tmp_path / "data",
        device_id="box-001",
        scanner={"device": "test:0", "resolution": 100, "mode": "Gray"},
        ocr={"workers": 2},
        sign={
            "token_serial": hsm.serial,
            "organisation_name": "UBND xã Quảng Phú",
            "trust_roots": [hsm.ca.pem],
            "trusted_root_sha256": [ca_sha256(hsm.ca)],
        },
        outbox={
            "host": "127.0.0.1",
            "port": broker.port,
            "ca_file": pki.ca.cert,
            "cert_file": client.cert,
            "key_file": client.key,
            "response_timeout_s": 5.0,
            "backoff_base_s": 0.2,
            "backoff_max_s": 1.0,
        },
    )
    accounts = dev_accounts(settings)
    from appliance.capture.uvc import UvcCamera
    from tests.integration.test_web_capture import _camera_video

    camera = UvcCamera(str(_camera_video(tmp_path / "camera.avi")), dpi_hint=150, discard=1)
    app = create_app(settings, scanner=SaneScanner(lock_timeout_s=60), camera=camera)
    # the whole loop: the box's outbox sender and the province's receiver over a private TLS broker
    from appliance.outbox.sender import Sender, open_factory
    from province.receiver import Receiver

    receiver = Running(Receiver(receiver_config(tmp_path / "rx", pki, broker.port, trust=(hsm.ca.pem,))))
    sender = Running(Sender(settings, open_factory(settings)))
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    officer = next(a for a in accounts if a[2] == "officer")
    yield f"http://127.0.0.1:{port}", f"{officer[0]}:{officer[1]}"
    srv.should_exit = True
    thread.join(timeout=30)
    sender.stop()
    receiver.stop()
    camera.close()


def _receipt_image(path: Path) -> None:
    """A one-stop receipt: its QR code carries the dossier facts."""
    import zxingcpp

    payload = json.dumps(
        {
            "MaHoSo": CODE,
            "MaTTHC": "1.001193",
            "SoDinhDanh": "044190000123",
            "HoTen": "Lê Thị Hoa",
            "TenGiayTo": "Đăng ký khai sinh",
            "NgayHenTra": "2024-05-20",
        },
        ensure_ascii=False,
    )
    symbol = np.asarray(zxingcpp.create_barcode(payload, zxingcpp.BarcodeFormat.QRCode).to_image(scale=6))
    page = np.full((1100, 850), 255, np.uint8)
    h, w = symbol.shape[:2]
    page[80 : 80 + h, 80 : 80 + w] = symbol if symbol.ndim == 2 else symbol[..., 0]
    Image.fromarray(page).save(path, dpi=(150, 150))


def test_counter_workflow_in_chromium(server: tuple[str, str], tmp_path: Path) -> None:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect, sync_playwright

    from bench.corpus import render_page

    base, creds = server
    user, password = creds.split(":", 1)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []

    image, truth = render_page(seed=3, dpi=200)
    sample = tmp_path / "to-khai.png"
    Image.fromarray(image).save(sample, dpi=(200, 200))
    second = tmp_path / "trang-2.png"
    Image.fromarray(render_page(seed=6, dpi=150)[0]).save(second, dpi=(150, 150))
    receipt = tmp_path / "giay-tiep-nhan.png"
    _receipt_image(receipt)
    # a word of the page, searched without diacritics
    from appliance.textindex import fold

    word = max((w for w in truth.split() if w.isalpha() and fold(w) != w.lower()), key=len)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 768}, locale="vi-VN")
        page.set_default_timeout(30_000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        def shot(name: str) -> None:
            # A click that navigates may still be loading: wait for it, and retry the capture once,
            # since Chromium refuses a screenshot in the middle of a navigation.
            path = ARTIFACTS / f"{name}.png"
            for attempt in range(3):
                page.wait_for_load_state("load")
                try:
                    page.screenshot(path=str(path), full_page=False)
                    break
                except PlaywrightError:
                    if attempt == 2:
                        raise
                    page.wait_for_timeout(500)
            shots.append(path)

        # sign in (wrong password first)
        page.goto(f"{base}/")
        expect(page.get_by_role("heading", name="Đăng nhập")).to_be_visible()
        page.get_by_label("Tên đăng nhập").fill(user)
        page.get_by_label("Mật khẩu").fill("sai")
        page.get_by_role("button", name="Đăng nhập").click()
        expect(page.locator("#login-error")).to_contain_text("không đúng")
        shot("01-dang-nhap")
        page.get_by_label("Tên đăng nhập").fill(user)
        page.get_by_label("Mật khẩu").fill(password)
        page.get_by_role("button", name="Đăng nhập").click()
        expect(page.get_by_role("heading", name="Mở hồ sơ")).to_be_visible()

        # a malformed code gets a Vietnamese message
        page.locator("#code").fill("000.00.19.H12-241399-1")
        page.get_by_role("button", name="Mở hồ sơ").click()
        expect(page.locator("#code-err")).to_contain_text("Mã hồ sơ không đúng dạng")
        shot("02-ma-ho-so-sai")

        # the receipt's QR fills the form
        page.get_by_label("Ảnh giấy tiếp nhận (JPG, PNG, PDF)").set_input_files(str(receipt))
        page.get_by_role("button", name="Đọc mã QR").click()
        expect(page.locator("#code")).to_have_value(CODE)
        expect(page.locator("#tthc_code")).to_have_value("1.001193")
        shot("03-doc-ma-qr")
        page.get_by_role("button", name="Mở hồ sơ").click()
        expect(page.get_by_role("heading", name=f"Hồ sơ {CODE}")).to_be_visible()

        # upload a page from the PC; its thumbnail appears, then OCR finishes
        page.get_by_label("Chọn tệp ảnh hoặc PDF").set_input_files(str(sample))
        page.get_by_role("button", name="Tải lên").click()
        expect(page.locator(".job img").first).to_be_visible()
        page.wait_for_selector(".job-done", timeout=WAIT_MS)
        shot("04-tai-len")
        upload_doc = page.locator(".job-done a.open-doc").first.get_attribute("href")
        assert upload_doc

        # scan one page with the SANE test scanner ("Giấy tờ A4 đen trắng")
        page.goto(f"{base}/dossiers/{CODE}")
        page.get_by_label("Giấy tờ A4 đen trắng").check()
        page.get_by_role("button", name="Quét").click()
        page.wait_for_selector(f".job-done >> a.open-doc:not([href='{upload_doc}'])", timeout=WAIT_MS)
        shot("05-quet")
        scanned_doc = [
            h
            for h in page.locator(".job-done a.open-doc").evaluate_all("els => els.map(e => e.getAttribute('href'))")
            if h != upload_doc
        ][0]

        # review: fields side by side with the page image; choose the document kind
        page.goto(f"{base}{upload_doc}")
        expect(page.locator("img.pageimg")).to_be_visible()
        page.get_by_label("Thành phần hồ sơ do tổ chức, cá nhân nộp").check()
        shot("06-kiem-tra")
        page.get_by_role("button", name="Lưu thông tin").click()
        expect(page.locator(".notice")).to_contain_text("Đã lưu")

        # the scanned page is a result: a result code is required, then issued automatically
        page.goto(f"{base}{scanned_doc}")
        page.get_by_label("Kết quả giải quyết TTHC (kể cả văn bản từ chối)").check()
        page.get_by_role("button", name="Lưu thông tin").click()
        expect(page.locator("#rc-err")).to_contain_text("mã kết quả")
        page.get_by_label("Cấp mã tự động khi để trống").check()
        page.get_by_role("button", name="Lưu thông tin").click()
        expect(page.locator(".notice")).to_contain_text("Đã lưu")
        expect(page.get_by_label("Mã kết quả (với kết quả giải quyết)")).to_have_value("KQ.000.00.00.H00.000001")

        # sign both with one PIN entry; packages are queued
        # (both reviewed by this officer: both pre-selected, with the reviewer shown)
        page.goto(f"{base}/sign")
        expect(page.locator("#token-state")).to_contain_text("Sẵn sàng ký")
        expect(page.locator("#sign-form input[name=doc]:checked")).to_have_count(2)
        expect(page.locator("#sign-form td.reviewer").first).to_have_text("Bạn")
        # the token's personal certificate names someone else: signing needs an explicit confirmation
        expect(page.locator("#cert-mismatch")).to_contain_text(OFFICER.common_name)
        page.get_by_label("Mã PIN của token").fill("000000")
        page.get_by_role("button", name="Ký và gửi").click()
        expect(page.locator("#sign-error")).to_contain_text("Chứng thư số trên token không mang tên của bạn")
        page.locator("#confirm-certificate").check()
        page.get_by_label("Mã PIN của token").fill("000000")
        page.get_by_role("button", name="Ký và gửi").click()
        expect(page.locator("#sign-error")).to_contain_text("PIN")
        page.locator("#confirm-certificate").check()
        page.get_by_label("Mã PIN của token").fill("123456")
        shot("07-ky-so")
        page.get_by_role("button", name="Ký và gửi").click()
        expect(page.get_by_role("heading", name="Theo dõi gửi lên Kho dữ liệu")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#packages a[href='" + upload_doc + "']")).to_be_visible()
        # the province receives, verifies and receipts the packages; the page refreshes by itself
        expect(page.locator("#packages td.state")).to_have_text(["Đã tiếp nhận", "Đã tiếp nhận"], timeout=WAIT_MS)
        shot("08-theo-doi")

        # the document says delivered; signed means frozen: no edit, only a correction
        page.goto(f"{base}{upload_doc}")
        expect(page.locator("#doc-state")).to_have_text("Kho dữ liệu đã tiếp nhận")
        expect(page.locator("#delivered")).to_be_visible()
        expect(page.get_by_role("button", name="Lưu thông tin")).to_have_count(0)
        expect(page.locator("#review-form input[name=so_ky_hieu]")).to_be_disabled()
        expect(page.locator("#trail")).to_contain_text("Kho dữ liệu tiếp nhận")
        expect(page.locator("#trail")).to_contain_text("Xác nhận ký bằng chứng thư không mang tên mình")
        shot("08b-da-tiep-nhan")
        # the signature checked in Vietnamese (Circular 15/2025), printable for the citizen
        page.locator("#verify-link").click()
        expect(page.locator("#verify-lines")).to_contain_text("RSASSA-PSS")
        expect(page.locator("#verify-lines")).to_contain_text(OFFICER.common_name)
        expect(page.locator("#verify-report")).to_be_visible()
        shot("08c-kiem-tra-chu-ky")
        page.goto(f"{base}/dossiers/{CODE}")
        expect(page.locator(f"#doc-{upload_doc.rsplit('/', 1)[-1]} .doc-state")).to_contain_text(
            "Kho dữ liệu đã tiếp nhận"
        )

        # search without diacritics finds the uploaded page
        page.goto(f"{base}/search")
        page.get_by_label("Mã hồ sơ, người nộp", exact=False).fill(f"{fold(word)} le thi hoa")
        page.get_by_role("button", name="Tìm").click()
        expect(page.locator(f".hits a[href='{upload_doc}']")).to_be_visible()
        shot("09-tra-cuu")

        # a second dossier: a photo from the document camera
        page.goto(f"{base}/")
        page.locator("#code").fill(CODE2)
        page.get_by_role("button", name="Mở hồ sơ").click()
        expect(page.get_by_role("heading", name=f"Hồ sơ {CODE2}")).to_be_visible()
        page.get_by_role("button", name="Chụp bằng máy chụp tài liệu").click()
        page.wait_for_selector(".job-done a.open-doc", timeout=WAIT_MS)
        shot("12-chup-anh")

        # reuse the page digitized for the first dossier instead of scanning it again
        page.get_by_role("link", name="Tìm giấy tờ đã số hóa để dùng lại", exact=False).click()
        expect(page.locator("#reuse-target")).to_contain_text(CODE2)
        page.get_by_label("Mã hồ sơ, người nộp", exact=False).fill(f"{fold(word)} le thi hoa")
        page.get_by_role("button", name="Tìm").click()
        shot("13-dung-lai")
        page.locator(f".hits li:has(a[href='{upload_doc}']) button").click()
        expect(page.locator(".notice")).to_contain_text("Đã dùng lại")
        expect(page.locator("#reused-from")).to_be_visible()

        # two papers uploaded as one batch: the officer splits them, then rescans one page
        page.goto(f"{base}/dossiers/{CODE2}")
        page.get_by_label("Chọn tệp ảnh hoặc PDF").set_input_files([str(sample), str(second)])
        page.get_by_role("button", name="Tải lên").click()
        page.wait_for_selector(".job-done:has(.thumbs li:nth-child(2)) a.open-doc", timeout=WAIT_MS)
        page.locator(".job-done:has(.thumbs li:nth-child(2)) a.open-doc").first.click()
        expect(page.locator(".pagelist li")).to_have_count(2)
        page.get_by_label("Tách trước trang 2").check()
        shot("14-tach-tai-lieu")
        page.get_by_role("button", name="Tách tài liệu").click()
        expect(page.locator(".notice")).to_contain_text("Đã tách")
        page.wait_for_selector(".job-done:has(a.open-doc:nth-of-type(2))", timeout=WAIT_MS)
        parts = page.locator(".job-done:has(a.open-doc:nth-of-type(2)) a.open-doc")
        expect(parts).to_have_count(2)
        part2 = parts.nth(1).get_attribute("href")
        assert part2
        page.goto(f"{base}{part2}")
        expect(page.locator(".pagelist li")).to_have_count(1)
        page.get_by_text("Quét lại / thay trang 1").click()
        shot("15-quet-lai")
        page.get_by_role("button", name="Quét lại trang 1").click()
        expect(page.locator(".notice")).to_contain_text("xử lý lại")
        for _ in range(WAIT_MS // 500):
            if "chờ kiểm tra" in page.locator("#doc-state").inner_text():
                break
            page.wait_for_timeout(500)
            page.reload()
        expect(page.locator("#doc-state")).to_contain_text("chờ kiểm tra")
        alt = page.locator(".pagelist img").get_attribute("alt") or ""
        assert alt.endswith("(thay)") and "trang-2.png" not in alt, alt  # the scanner's page took its place

        # a correction of the delivered page: a new version to review and sign again; the old one stays
        page.goto(f"{base}{upload_doc}")
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("button", name="Tạo bản điều chỉnh").click()
        expect(page.locator(".notice")).to_contain_text("Đã tạo bản điều chỉnh")
        expect(page.locator("#doc-version")).to_have_text("Bản điều chỉnh 2")
        expect(page.get_by_role("button", name="Lưu thông tin")).to_be_visible()
        expect(page.locator("#versions li")).to_have_count(2)
        shot("16-ban-dieu-chinh")

        page.goto(f"{base}/stats")
        expect(page.locator("#stats tbody tr").first).to_contain_text("2")
        expect(page.locator("#stats tbody tr td").nth(6)).to_have_text("1")  # one dossier reused a document
        shot("10-thong-ke")
        page.goto(f"{base}/backlog")
        shot("11-ton-dong")
        assert not errors, errors
        browser.close()

    assert all(s.stat().st_size > 5000 for s in shots)
    if os.environ.get("DOCS_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        for s in shots:
            shutil.copy2(s, DOCS_IMG / s.name)
