"""The provincial readiness dashboard in Debian's headless Chromium (Playwright): signing in, verdict counts,
the failing items in plain Vietnamese, the filters, a commune page with its SVG charts, marking an incident
handled (a form with the session's CSRF token), signing out. The catalogue is filled through the real
ingest code (tests.integration.test_dashboard.seed).

A screenshot of each page goes to test-artifacts/e2e/dashboard-*.png.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need
from tests.e2e.test_web_browser import CHROMIUM, LAUNCH_ARGS
from tests.integration.test_dashboard import ALWAYS_OPEN, PASSWORD, seed

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[str]:
    need("chromium")
    import socket

    import uvicorn

    from province.dashboard.app import create_app
    from province.dashboard.auth import set_account

    factory = seed(f"sqlite:///{tmp_path / 'catalogue.db'}")
    set_account(factory, username="it-test", full_name="Phạm IT", password=PASSWORD)
    app = create_app(factory, ALWAYS_OPEN)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=30)


def test_dashboard_in_chromium(dashboard: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 900}, locale="vi-VN")
        external: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(dashboard) else external.append(r.url))
        page.goto(dashboard + "/")  # not signed in: the sign-in form first
        expect(page).to_have_url(dashboard + "/login?next=/")
        page.fill("#username", "it-test")
        page.fill("#password", "sai-mat-khau-roi")
        page.click("#login")
        expect(page.locator("#login-error")).to_contain_text("Sai tên đăng nhập hoặc mật khẩu")
        page.fill("#username", "it-test")
        page.fill("#password", PASSWORD)
        page.click("#login")
        expect(page).to_have_url(dashboard + "/")
        expect(page.locator("#me")).to_have_text("Phạm IT")
        expect(page.locator('[data-count="ok"] b')).to_have_text("1")
        expect(page.locator('[data-count="failing"] b')).to_have_text("2")
        expect(page.locator('[data-count="none"] b')).to_have_text("1")
        bad = page.locator('tr.unit[data-commune="19888"]')
        expect(bad).to_contain_text("Chứng thư số của Nguyễn Văn A hết hạn sau 12 ngày")
        expect(bad).to_contain_text("Máy quét không kết nối")
        expect(page.locator('tr.unit[data-commune="00004"]')).to_contain_text("Mất kết nối 3 ngày")
        page.screenshot(path=str(ARTIFACTS / "dashboard-list.png"), full_page=True)

        # filter: only the units that are not ready, in one province
        page.select_option("#f-verdict", "failing")
        page.select_option("#f-province", "44")
        page.click("#f-apply")
        expect(page.locator("tr.unit")).to_have_count(1)
        expect(page.locator("tr.unit")).to_have_attribute("data-commune", "19888")
        # search without diacritics
        page.goto(dashboard + "/")
        page.fill("#f-q", "quang phu")
        page.click("#f-apply")
        expect(page.locator("tr.unit")).to_have_count(1)

        # the commune page with its charts
        page.click("text=Xã Quảng Phú")
        expect(page.locator("#verdict")).to_contain_text("Sẵn sàng")
        expect(page.locator("svg.chart")).to_have_count(4)
        expect(page.locator("svg.chart polyline").first).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "dashboard-commune.png"), full_page=True)

        # an officer's report, marked handled by provincial IT
        page.goto(dashboard + "/incidents")
        row = page.locator("tr[data-incident]")
        expect(row).to_contain_text("Máy quét báo lỗi kẹt giấy")
        row.locator("button").click()  # recorded as handled by the signed-in account
        expect(page.locator("tr[data-incident]")).to_have_count(0)
        page.goto(dashboard + "/incidents?show=all")
        expect(page.locator("tr[data-incident]")).to_contain_text("Đã xử lý (Phạm IT)")

        page.click("#logout")
        expect(page).to_have_url(dashboard + "/login")
        page.goto(dashboard + "/alerts")
        expect(page).to_have_url(dashboard + "/login?next=/alerts")
        browser.close()
    assert external == []  # no CDN, nothing fetched from elsewhere
