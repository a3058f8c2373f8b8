"""The document camera named in the settings (``[camera] kind = "uvc" | "picamera"``), or None.

A camera that cannot be opened is logged and left out: the counter keeps working with the scanner and
file uploads, and ``appliance doctor`` says what is wrong."""

from __future__ import annotations

import logging

from appliance.capture import Camera
from appliance.errors import ApplianceError
from appliance.settings import CameraSettings

log = logging.getLogger(__name__)


def open_camera(settings: CameraSettings) -> Camera | None:
    if settings.kind == "none":
        return None
    try:
        if settings.kind == "uvc":
            from appliance.capture.uvc import UvcCamera

            source: int | str = int(settings.uvc_source) if settings.uvc_source.isdigit() else settings.uvc_source
            return UvcCamera(source, dpi_hint=settings.dpi_hint)
        from appliance.capture.picamera import PicameraCamera

        return PicameraCamera(dpi_hint=settings.dpi_hint)
    except ApplianceError as err:
        log.warning("document camera %s not available: %s (%s)", settings.kind, err.detail, err.code)
        return None
