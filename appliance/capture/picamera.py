"""Raspberry Pi camera through picamera2 (apt ``python3-picamera2``; imported only here, lazily).

A thin adapter: configure a still capture once, return each frame as an RGB RawPage.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

import numpy as np

from appliance.errors import CameraError, NoCamera
from appliance.model import RawPage, Source

log = logging.getLogger(__name__)


class PicameraCamera:
    """Camera backed by picamera2. ``size`` is the still size (width, height); None = sensor default."""

    def __init__(self, camera_num: int = 0, *, size: tuple[int, int] | None = None, dpi_hint: float = 200.0) -> None:
        self.dpi_hint = dpi_hint
        self._lock = threading.Lock()
        self._count = 0
        try:
            module: Any = importlib.import_module("picamera2")
        except ImportError as err:  # not a Pi, or python3-picamera2 missing
            raise NoCamera(f"picamera2 unavailable: {err}") from err
        try:
            cameras = module.Picamera2.global_camera_info()
        except Exception as err:
            raise NoCamera(f"libcamera enumeration failed: {err}") from err
        if camera_num >= len(cameras):
            raise NoCamera(f"camera {camera_num} not found ({len(cameras)} attached)", camera=str(camera_num))
        try:
            self._cam: Any = module.Picamera2(camera_num)
            main: dict[str, Any] = {"format": "RGB888"}
            if size is not None:
                main["size"] = size
            self._cam.configure(self._cam.create_still_configuration(main=main))
            self._cam.start()
        except Exception as err:
            raise NoCamera(f"camera {camera_num} cannot be started: {err}", camera=str(camera_num)) from err
        log.info("picamera open camera=%d", camera_num)

    def capture(self) -> RawPage:
        with self._lock:
            if self._cam is None:
                raise CameraError("camera is closed")
            try:
                frame = self._cam.capture_array("main")
            except Exception as err:
                raise CameraError(f"capture failed: {err}") from err
            arr = np.asarray(frame)
            if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
                raise CameraError(f"unexpected frame {arr.dtype} {arr.shape}")
            # picamera2's "RGB888" is laid out B, G, R in memory (OpenCV order): flip to RGB
            image = np.ascontiguousarray(arr[:, :, 2::-1])
            self._count += 1
            return RawPage(image=image, dpi=self.dpi_hint, source=Source.CAMERA, label=f"camera {self._count}")

    def close(self) -> None:
        with self._lock:
            cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.stop()
            finally:
                cam.close()


__all__ = ["PicameraCamera"]
