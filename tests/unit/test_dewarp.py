"""Page curl correction (issue 14): bent text lines straightened where they can be, flagged where not.

The curled pages here are bent by models of their own, not by the benchmark's `_curl` (one edge lifted,
a quadratic ramp), so the correction is not checked against the generator it was tried on:
- a cylinder: one side of the sheet rolls up towards a camera above the page's centre, so the raised
  part looks bigger and the lines spread apart towards the top and the bottom (opposite bends);
- a sine bend across the page, growing from top to bottom;
- a short ripple (a crumpled sheet), which no smooth field can follow.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from appliance import dewarp, imaging
from appliance.model import CleanPage, PageFlag, RawPage, Source
from appliance.ocr import recognize
from bench import corpus

DPI = 200
PX_MM = DPI / 25.4


def _grid(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape[:2]
    xx, yy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return xx, yy


def cylinder(img: np.ndarray, lift_mm: float, right: bool, dpi: float = DPI) -> np.ndarray:
    """One half of the sheet rolled up by ``lift_mm`` at its edge, seen from 40 cm above the centre."""
    px_mm = dpi / 25.4
    h, w = img.shape[:2]
    xx, yy = _grid(img)
    s = xx / w if right else 1 - xx / w
    z = lift_mm * px_mm * np.clip((s - 0.5) / 0.5, 0, 1) ** 1.5
    f = (400 * px_mm - z) / (400 * px_mm)  # a raised point is nearer the camera: it looks bigger
    mx, my = w / 2 + (xx - w / 2) * f, h / 2 + (yy - h / 2) * f
    out: np.ndarray = cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


def wave(
    img: np.ndarray, amp_mm: float, period_mm: float, rows_period_mm: float | None = None, dpi: float = DPI
) -> np.ndarray:
    """Lines bent by a sine across the page; with ``rows_period_mm`` the bend also alternates down the page."""
    px_mm = dpi / 25.4
    h, _ = img.shape[:2]
    xx, yy = _grid(img)
    across = np.sin(2 * np.pi * xx / (period_mm * px_mm) + 0.7)
    down = np.sin(2 * np.pi * yy / (rows_period_mm * px_mm)) if rows_period_mm else 0.5 + yy / h
    out: np.ndarray = cv2.remap(
        img, xx, yy + amp_mm * px_mm * across * down, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return out


def small_copy(img: np.ndarray) -> np.ndarray:
    return imaging._shrink(img, 2)  # about 100 dpi, as the imaging path hands it over


def read(img: np.ndarray) -> str:
    return recognize(CleanPage(image=img, dpi=DPI, rotation=0, skew=0.0)).text


@pytest.fixture(scope="module")
def page() -> tuple[np.ndarray, str]:
    return corpus.render_page(3, DPI)


def test_flat_page_is_left_untouched(page: tuple[np.ndarray, str], monkeypatch: pytest.MonkeyPatch) -> None:
    img, _ = page
    small = small_copy(img)

    def no_remap(*args: object, **kwargs: object) -> None:
        raise AssertionError("a flat page was remapped")

    monkeypatch.setattr(dewarp, "_remap", no_remap)
    result = dewarp.straighten(img, small, DPI)
    assert result.image is img and result.small is small
    assert not result.applied and result.straight
    assert result.lines >= dewarp.MIN_LINES and result.bend_before_mm <= dewarp.STRAIGHT_MM


@pytest.mark.parametrize(
    "bend",
    [
        pytest.param(lambda img: cylinder(img, 50.0, right=True), id="cylinder-right"),
        pytest.param(lambda img: cylinder(img, 45.0, right=False), id="cylinder-left"),
        pytest.param(lambda img: wave(img, 2.5, 140.0), id="sine"),
    ],
)
def test_bent_lines_come_out_straight(page: tuple[np.ndarray, str], bend: object) -> None:
    img = bend(page[0])  # type: ignore[operator]
    result = dewarp.straighten(img, small_copy(img), DPI)
    assert result.applied and result.straight
    assert result.bend_before_mm > 2 * dewarp.STRAIGHT_MM
    assert result.bend_after_mm < 0.3 * result.bend_before_mm
    # measured again from scratch on the full-resolution result, not on the analysis copy it returned
    again = dewarp.bend_mm(dewarp.text_lines(small_copy(result.image), PX_MM / 2), PX_MM / 2)
    assert again <= dewarp.STRAIGHT_MM
    assert result.image.shape == img.shape and result.image.dtype == np.uint8


def test_page_on_its_side(page: tuple[np.ndarray, str]) -> None:
    bent = np.ascontiguousarray(np.rot90(wave(page[0], 2.5, 140.0)))  # lines run up and down
    result = dewarp.straighten(bent, small_copy(bent), DPI, vertical=True)
    assert result.applied and result.straight and result.image.shape == bent.shape
    upright = np.ascontiguousarray(np.rot90(result.image, -1))
    assert dewarp.bend_mm(dewarp.text_lines(small_copy(upright), PX_MM / 2), PX_MM / 2) <= dewarp.STRAIGHT_MM


@pytest.mark.slow
@pytest.mark.tesseract
@pytest.mark.parametrize(
    "bend",
    [
        pytest.param(lambda img: cylinder(img, 50.0, right=True), id="cylinder-right"),
        pytest.param(lambda img: wave(img, 2.5, 140.0), id="sine"),
    ],
)
def test_straightened_page_reads_better(page: tuple[np.ndarray, str], bend: object, tesseract: str) -> None:
    truth = page[1]
    img = bend(page[0])  # type: ignore[operator]
    result = dewarp.straighten(img, small_copy(img), DPI)
    assert result.applied
    before = corpus.cer_unordered(truth, read(img))
    after = corpus.cer_unordered(truth, read(result.image))
    assert after < 0.5 * before and after <= 0.02, (before, after)


def test_ripple_no_field_can_follow_is_kept_as_it_was(page: tuple[np.ndarray, str]) -> None:
    img = wave(page[0], 1.2, 90.0, rows_period_mm=14.0)  # neighbouring lines bend in opposite directions
    small = small_copy(img)
    result = dewarp.straighten(img, small, DPI)
    assert result.image is img and result.small is small
    assert not result.applied and not result.straight
    assert result.bend_before_mm > dewarp.STRAIGHT_MM


def test_too_few_lines_to_follow() -> None:
    img = np.full((2339, 1654, 3), 250, np.uint8)
    for k in range(3):  # three bent rules: lines enough to see a bend, too few to trust a field
        xs = np.arange(200, 1450)
        ys = 600 + 500 * k + 25 * np.sin(xs / 180.0)
        cv2.polylines(img, [np.stack([xs, ys], axis=1).astype(np.int32)], False, (20, 20, 20), 12)
    result = dewarp.straighten(img, small_copy(img), DPI)
    assert result.lines < dewarp.MIN_LINES
    assert not result.applied and not result.straight and result.image is img


# --- through the imaging path -----------------------------------------------------------------------
def _photo_of(img: np.ndarray, seed: int) -> np.ndarray:
    params = corpus.PhotoParams(tilt_deg=8.0, tilt_dir_deg=60.0, falloff=0.2, quality=88)
    return corpus.camera_photo(img, seed=seed, params=params)


def _output_bend(clean: CleanPage) -> tuple[int, float]:
    k = max(1, round(clean.dpi / 100))
    px_mm = clean.dpi / 25.4 / k
    lines = dewarp.text_lines(imaging._shrink(clean.image, k), px_mm)
    return len(lines), dewarp.bend_mm(lines, px_mm)


@pytest.mark.slow
def test_curled_photo_is_straightened_and_no_longer_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    photo = _photo_of(cylinder(corpus.render_page(3, 300)[0], 45.0, right=True, dpi=300), 4)
    clean = imaging.clean(RawPage(photo, 0, Source.CAMERA))
    assert clean.perspective and PageFlag.CURLED not in clean.flags
    lines, bend = _output_bend(clean)
    assert lines >= 20 and bend <= dewarp.STRAIGHT_MM

    # Without the correction the same photo is flagged and its lines stay bent.
    def keep(image: np.ndarray, small: np.ndarray, dpi: float, *, vertical: bool = False) -> dewarp.Straightened:
        return dewarp.Straightened(image, small, False, False, 0.0, 0.0, 0)

    monkeypatch.setattr(dewarp, "straighten", keep)
    unfixed = imaging.clean(RawPage(photo, 0, Source.CAMERA))
    assert PageFlag.CURLED in unfixed.flags
    assert _output_bend(unfixed)[1] > 2 * bend


@pytest.mark.slow
def test_curled_photo_that_cannot_be_straightened_stays_flagged() -> None:
    rippled = wave(corpus.render_page(3, 300)[0], 1.8, 120.0, rows_period_mm=16.0, dpi=300)
    clean = imaging.clean(RawPage(_photo_of(rippled, 4), 0, Source.CAMERA))
    assert clean.perspective and PageFlag.CURLED in clean.flags
    assert clean.image.shape[0] > 2000  # the whole page is still there


def test_bend_of_a_straight_sloping_line_is_zero() -> None:
    x = np.arange(0.0, 600.0, 16.0)
    line = dewarp._Line(x, 100 + 0.05 * x, np.ones_like(x))
    assert dewarp.bend_mm([line], 4.0) < 1e-6
    arc = dewarp._Line(x, 100 + 8 * np.sin(x / 600 * math.pi), np.ones_like(x))
    assert dewarp.bend_mm([arc], 4.0) > 0.4
