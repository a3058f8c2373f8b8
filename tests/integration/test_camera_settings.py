"""The document camera configured in the settings is built by `appliance serve` and offered in the UI."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from appliance.capture.cameras import open_camera
from appliance.settings import CameraSettings, load_settings
from appliance.web.app import create_app
from appliance.web.auth import create_user
from appliance.web.models import Role
from tests.integration.test_web_capture import _camera_video


def test_no_camera_configured_gives_none() -> None:
    assert open_camera(CameraSettings()) is None


def test_a_camera_that_cannot_be_opened_is_logged_and_left_out(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert open_camera(CameraSettings(kind="uvc", uvc_source="/nonexistent/video.avi")) is None
    assert "camera" in caplog.text and "not available" in caplog.text


def test_configured_uvc_camera_is_offered_on_the_dossier_page(tmp_path: Path) -> None:
    video = _camera_video(tmp_path / "cam.avi")
    settings = load_settings(data_dir=tmp_path / "data", camera={"kind": "uvc", "uvc_source": str(video)})
    camera = open_camera(settings.camera)
    assert camera is not None
    try:
        app = create_app(settings, camera=camera, resume=False)
        with TestClient(app) as client:
            with app.state.ctx.tx() as session:
                create_user(session, username="canbo", full_name="Cán bộ", role=Role.OFFICER, password="x" * 12)
            page = client.get("/login")
            csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            client.post("/login", data={"username": "canbo", "password": "x" * 12, "csrf": csrf})
            home = client.get("/")
            csrf = home.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            client.post("/dossiers", data={"csrf": csrf, "code": "000.00.19.H12-230412-0007"})
            dossier = client.get("/dossiers/000.00.19.H12-230412-0007")
            assert "Chụp bằng máy chụp tài liệu" in dossier.text
            assert client.get("/backlog").text.count("/backlog/camera") == 1
    finally:
        camera.close()  # type: ignore[attr-defined]
