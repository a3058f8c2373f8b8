"""USB (UVC) document camera through OpenCV's VideoCapture.

``source`` is a device index (0 = /dev/video0), a device path, a video file or an image
sequence pattern such as ``frames/%03d.png`` (the last two are how tests feed it). Each
``capture()`` drops a few buffered frames first so the officer gets what is under the camera
now, not what was there a second ago.
"""

from __future__ import annotations

import logging
import threading

import cv2
import numpy as np

from appliance.errors import CameraError, NoCamera
from appliance.model import PageImage, RawPage, Source

log = logging.getLogger(__name__)


class UvcCamera:
    """Camera backed by cv2.VideoCapture. Thread-safe; reopens a live device once after a failure."""

    def __init__(
        self,
        source: int | str,
        dpi_hint: float = 200.0,
        *,
        discard: int = 3,
        size: tuple[int, int] | None = None,
    ) -> None:
        self.source = source
        self.dpi_hint = dpi_hint
        self.discard = max(0, discard)
        self.size = size
        self._lock = threading.Lock()
        self._count = 0
        self._cap: cv2.VideoCapture | None = None
        with self._lock:
            self._cap = self._open()

    @property
    def _live(self) -> bool:
        """A real device (re-plug possible), as opposed to a file or image sequence."""
        return isinstance(self.source, int) or str(self.source).startswith("/dev/")

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            cap.release()
            raise NoCamera(f"camera {self.source!r} cannot be opened", camera=str(self.source))
        if self._live:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            if self.size is not None:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        log.info("camera open source=%s", self.source)
        return cap

    def _read(self, cap: cv2.VideoCapture) -> PageImage | None:
        for _ in range(self.discard):
            if not cap.grab():
                return None
        ok, frame = cap.read()
        if not ok or frame is None or frame.size == 0:
            return None
        arr = np.asarray(frame, dtype=np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim == 2:
            return np.ascontiguousarray(arr)
        code = cv2.COLOR_BGRA2RGB if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB
        return np.ascontiguousarray(cv2.cvtColor(arr, code), dtype=np.uint8)

    def capture(self) -> RawPage:
        with self._lock:
            if self._cap is None:
                self._cap = self._open()
            image = self._read(self._cap)
            if image is None and self._live:
                log.warning("camera read failed, reopening source=%s", self.source)
                self._cap.release()
                self._cap = None
                self._cap = self._open()
                image = self._read(self._cap)
            if image is None:
                raise CameraError(f"camera {self.source!r} gave no frame", camera=str(self.source))
            self._count += 1
            return RawPage(image=image, dpi=self.dpi_hint, source=Source.CAMERA, label=f"camera {self._count}")

    def close(self) -> None:
        with self._lock:
            if self._cap is not None:
                self._cap.release()
                self._cap = None

    def __enter__(self) -> UvcCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["UvcCamera"]
