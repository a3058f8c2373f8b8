"""Cameras: the UVC/OpenCV backend on real video files and image sequences written here;
the picamera2 adapter against a small stand-in module (picamera2 cannot run off a Pi)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from appliance.capture import Camera
from appliance.capture.picamera import PicameraCamera
from appliance.capture.uvc import UvcCamera
from appliance.errors import CameraError, NoCamera
from appliance.messages_vi import MESSAGES_VI, message_for

W, H = 160, 120


def coloured_frame(level: int) -> np.ndarray:
    """RGB frame: red left third, green middle, blue right; brightness `level` in the top strip."""
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, : W // 3] = (220, 20, 20)
    rgb[:, W // 3 : 2 * W // 3] = (20, 220, 20)
    rgb[:, 2 * W // 3 :] = (20, 20, 220)
    rgb[:20, :] = level
    return rgb


def write_video(path: Path, levels: list[int]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    assert writer.isOpened()
    for level in levels:
        writer.write(cv2.cvtColor(coloured_frame(level), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_sequence(folder: Path, levels: list[int]) -> str:
    folder.mkdir()
    for i, level in enumerate(levels):
        cv2.imwrite(str(folder / f"f{i:03d}.png"), cv2.cvtColor(coloured_frame(level), cv2.COLOR_RGB2BGR))
    return str(folder / "f%03d.png")


def test_video_file_frames_in_rgb_after_discarding(tmp_path: Path) -> None:
    levels = [0, 40, 80, 120, 160, 200, 240]
    cam: Camera = UvcCamera(str(write_video(tmp_path / "doc.avi", levels)), dpi_hint=180, discard=2)
    try:
        first = cam.capture()
        second = cam.capture()
    finally:
        cam.close()
    assert first.source == "camera" and first.dpi == 180
    assert first.image.shape == (H, W, 3) and first.image.dtype == np.uint8
    # RGB order: left third red, right third blue
    r, g, b = first.image[60, 10].astype(int)
    assert r > 150 and b < 80
    r, g, b = first.image[60, W - 10].astype(int)
    assert b > 150 and r < 80
    # two buffered frames dropped before each capture: frames #2 and #5
    assert abs(int(first.image[5, 80].mean()) - levels[2]) < 12
    assert abs(int(second.image[5, 80].mean()) - levels[5]) < 12
    assert (first.label, second.label) == ("camera 1", "camera 2")


def test_image_sequence_and_end_of_stream(tmp_path: Path) -> None:
    pattern = write_sequence(tmp_path / "seq", [30, 60, 90])
    with UvcCamera(pattern, discard=0) as cam:
        levels = [int(cam.capture().image[5, 80].mean()) for _ in range(3)]
        assert levels == [30, 60, 90]  # PNG is lossless
        with pytest.raises(CameraError) as info:
            cam.capture()  # nothing more: a file source does not loop
    assert message_for(info.value) == MESSAGES_VI["camera_failed"]


def test_missing_camera(tmp_path: Path) -> None:
    with pytest.raises(NoCamera) as info:
        UvcCamera(str(tmp_path / "no-such-video.avi"))
    assert message_for(info.value) == MESSAGES_VI["camera_not_found"]


def test_closed_camera_reopens_on_capture(tmp_path: Path) -> None:
    cam = UvcCamera(write_sequence(tmp_path / "seq", [10, 20]), discard=0)
    cam.capture()
    cam.close()
    cam.close()  # twice is fine
    page = cam.capture()  # opened again from the start
    assert int(page.image[5, 80].mean()) == 10
    cam.close()


# --- picamera2 adapter -----------------------------------------------------------------------------


class FakePicamera2:
    """Stands in for picamera2.Picamera2: frames in picamera2's RGB888 layout (B, G, R)."""

    cameras: list[dict[str, Any]] = [{"Model": "imx708"}]
    instances: list[FakePicamera2] = []
    fail_capture = False

    def __init__(self, camera_num: int = 0) -> None:
        self.camera_num = camera_num
        self.config: dict[str, Any] | None = None
        self.started = False
        self.closed = False
        FakePicamera2.instances.append(self)

    @classmethod
    def global_camera_info(cls) -> list[dict[str, Any]]:
        return cls.cameras

    def create_still_configuration(self, main: dict[str, Any]) -> dict[str, Any]:
        return {"main": dict(main), "kind": "still"}

    def configure(self, config: dict[str, Any]) -> None:
        self.config = config

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        if FakePicamera2.fail_capture:
            raise RuntimeError("Camera frontend has timed out!")
        assert name == "main" and self.started
        w, h = (self.config or {}).get("main", {}).get("size", (64, 48))
        return np.ascontiguousarray(cv2.cvtColor(coloured_frame(100)[:h, :w], cv2.COLOR_RGB2BGR))


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> type[FakePicamera2]:
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    monkeypatch.setattr(FakePicamera2, "instances", [])
    monkeypatch.setattr(FakePicamera2, "cameras", [{"Model": "imx708"}])
    monkeypatch.setattr(FakePicamera2, "fail_capture", False)
    return FakePicamera2


def test_picamera_adapter_configures_and_returns_rgb(fake_picamera2: type[FakePicamera2]) -> None:
    cam = PicameraCamera(size=(120, 90), dpi_hint=220)
    (dev,) = fake_picamera2.instances
    assert dev.started
    assert dev.config == {"main": {"format": "RGB888", "size": (120, 90)}, "kind": "still"}
    page = cam.capture()
    assert page.image.shape == (90, 120, 3) and page.dpi == 220 and page.source == "camera"
    r, g, b = page.image[60, 5].astype(int)
    assert r > 150 and b < 80  # B,G,R memory order flipped to RGB
    cam.close()
    assert dev.closed and not dev.started
    with pytest.raises(CameraError):
        cam.capture()


def test_picamera_no_camera_attached(fake_picamera2: type[FakePicamera2]) -> None:
    fake_picamera2.cameras = []
    with pytest.raises(NoCamera):
        PicameraCamera()


def test_picamera_capture_failure(fake_picamera2: type[FakePicamera2]) -> None:
    cam = PicameraCamera()
    fake_picamera2.fail_capture = True
    with pytest.raises(CameraError) as info:
        cam.capture()
    assert info.value.code == "camera_failed"
    cam.close()


def test_picamera_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import raises ImportError
    with pytest.raises(NoCamera):
        PicameraCamera()


def on_a_pi() -> bool:
    model = Path("/proc/device-tree/model")
    return model.exists() and "Raspberry Pi" in model.read_text(errors="replace")


@pytest.mark.pi
@pytest.mark.skipif(not on_a_pi(), reason="needs a Raspberry Pi with a camera")
def test_picamera_smoke_on_pi() -> None:
    cam = PicameraCamera()
    try:
        page = cam.capture()
    finally:
        cam.close()
    assert page.image.ndim == 3 and page.image.shape[2] == 3 and page.image.size > 0
