"""imaging.clean on synthetic pages: skew, orientation, crop, camera rectification, flags, colour."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from appliance import dewarp, imaging
from appliance.errors import ImageTooSmall, NotAnImage
from appliance.messages_vi import MESSAGES_VI, message_for
from appliance.model import CleanOptions, CleanPage, PageFlag, RawPage, Source
from bench import corpus

FONT = "/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf"
BOLD = "/usr/share/fonts/truetype/liberation2/LiberationSerif-Bold.ttf"
LINES = (
    "Căn cứ Luật Tổ chức chính quyền địa phương ngày 19 tháng 6 năm 2015;",
    "Căn cứ Nghị định số 45/2020/NĐ-CP của Chính phủ về thực hiện thủ tục hành chính",
    "trên môi trường điện tử; xét đề nghị của công chức Văn phòng - Thống kê,",
    "Điều 1. Phê duyệt danh sách hồ sơ được số hóa tại Bộ phận Một cửa xã.",
    "Điều 2. Giao công chức Tư pháp - Hộ tịch kiểm tra, đối chiếu bản giấy với",
    "bản điện tử; lưu trữ hồ sơ theo đúng quy định hiện hành của pháp luật.",
    "Điều 3. Quyết định này có hiệu lực kể từ ngày ký. Chánh Văn phòng, các ông",
    "bà có tên tại Điều 1 chịu trách nhiệm thi hành Quyết định này./.",
)
RED = (205, 35, 45)


def render(
    dpi: int = 300,
    lines: int = 16,
    text: tuple[str, ...] | None = None,
    frame: bool = False,
    seal: bool = False,
    rgb: bool = False,
) -> np.ndarray:
    """An upright A4 page: a bold title and `lines` lines of 12 pt Vietnamese text (25 mm margins)."""
    mm = dpi / 25.4
    size = (round(210 * mm), round(297 * mm))
    img = Image.new("RGB" if rgb or seal else "L", size, "white")
    draw = ImageDraw.Draw(img)
    if frame:  # a 0.8 mm rule 10 mm inside the sheet's edge: shows where the sheet's edges ended up
        draw.rectangle([10 * mm, 10 * mm, size[0] - 10 * mm, size[1] - 10 * mm], outline="black", width=round(0.8 * mm))
    body = ImageFont.truetype(FONT, round(12 * dpi / 72))
    y = 25 * mm
    if text is None:
        draw.text(
            (size[0] / 2, y),
            "QUYẾT ĐỊNH",
            font=ImageFont.truetype(BOLD, round(14 * dpi / 72)),
            fill="black",
            anchor="mt",
        )
        y += 12 * mm
        text = tuple(LINES[i % len(LINES)] for i in range(lines))
    for line in text:
        draw.text((25 * mm, y), line, font=body, fill="black")
        y += 18 * dpi / 72
    if seal:
        cx, cy, r = size[0] * 0.7, size[1] * 0.85, 20 * mm
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=RED, width=round(1.2 * mm))
        draw.ellipse([cx - 0.7 * r, cy - 0.7 * r, cx + 0.7 * r, cy + 0.7 * r], outline=RED, width=round(0.6 * mm))
    return np.asarray(img)


def rotate(img: np.ndarray, degrees: float, fill: int = 255) -> np.ndarray:
    """Counter-clockwise rotation, canvas grown to keep everything (as a crooked sheet on a scanner)."""
    return np.asarray(Image.fromarray(img).rotate(degrees, resample=Image.BILINEAR, expand=True, fillcolor=fill))


def desk(h: int, w: int, rng: np.random.Generator, level: tuple[float, float, float]) -> np.ndarray:
    """A wood-grain desk texture around `level` (RGB float32)."""
    low = cv2.resize(rng.normal(0, 1, (h // 16 + 1, w // 16 + 1)).astype(np.float32), (w, h))
    grain = np.sin(np.linspace(0, 140, w, dtype=np.float32)) * 0.5 + rng.normal(0, 0.6, w).astype(np.float32)
    tex = 10 * low + 10 * grain[None, :]
    return cv2.merge([tex + np.float32(c) for c in level])


def photo(
    page: np.ndarray,
    corners: list[tuple[float, float]],
    size: tuple[int, int] = (3200, 2400),  # (height, width): a portrait 7.7 MP photo
    desk_level: tuple[float, float, float] = (150, 115, 85),
    light: tuple[float, float] = (0.6, 1.0),
    seed: int = 0,
) -> np.ndarray:
    """The page as a camera sees it: warped onto `corners` (TL, TR, BR, BL) on a desk, uneven light, JPEG."""
    rng = np.random.default_rng(seed)
    h, w = size
    ph, pw = page.shape[:2]
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    m = cv2.getPerspectiveTransform(src, np.array(corners, np.float32))
    rgb = page if page.ndim == 3 else cv2.cvtColor(page, cv2.COLOR_GRAY2RGB)
    warped = cv2.warpPerspective(rgb, m, (w, h)).astype(np.float32)
    mask = cv2.warpPerspective(np.ones((ph, pw), np.float32), m, (w, h))
    mask = cv2.merge([mask, mask, mask])
    img = desk(h, w, rng, desk_level) * (1 - mask) + warped * np.float32(0.93) * mask
    gx = np.linspace(0, 0.6, w, dtype=np.float32)[None, :] + np.linspace(0, 0.4, h, dtype=np.float32)[:, None]
    lit = np.float32(light[0]) + np.float32(light[1] - light[0]) * gx
    img *= cv2.merge([lit, lit, lit])
    noise = np.empty_like(img)
    cv2.setRNGSeed(seed)
    cv2.randn(noise, 0.0, 3.0)
    img += noise
    out = np.clip(img, 0, 255).astype(np.uint8)
    _, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 88])
    decoded: np.ndarray = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return decoded


# A portrait sheet, tilted and in perspective, inside a 2400x3200 (w x h) photo (about 73 % of its height).
CORNERS = [(700.0, 380.0), (2080.0, 300.0), (2250.0, 2700.0), (560.0, 2580.0)]


def grey(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def frame_margins_mm(img: np.ndarray, dpi: float) -> tuple[float, float, float, float]:
    """Distance (mm) from the left, right, top and bottom image edge to the printed frame rule."""
    g = grey(img)
    thr, _ = cv2.threshold(g, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark = g < thr
    cols = np.flatnonzero(dark.mean(axis=0) > 0.5)
    rows = np.flatnonzero(dark.mean(axis=1) > 0.5)
    assert len(cols) and len(rows), "frame rule not found"
    h, w = g.shape
    return tuple(v / dpi * 25.4 for v in (cols[0], w - 1 - cols[-1], rows[0], h - 1 - rows[-1]))  # type: ignore[return-value]


def paper_patches(img: np.ndarray) -> np.ndarray:
    """Median brightness of small text-free patches spread over the page (margins, empty lower half)."""
    g = grey(img)
    h, w = g.shape
    spots = [
        (0.04, 0.5),
        (0.96, 0.5),
        (0.5, 0.03),
        (0.5, 0.97),
        (0.2, 0.8),
        (0.8, 0.8),
        (0.5, 0.75),
        (0.04, 0.1),
    ]
    r = max(4, w // 100)
    return np.array([np.median(g[int(y * h) - r : int(y * h) + r, int(x * w) - r : int(x * w) + r]) for x, y in spots])


def scan(img: np.ndarray, dpi: float = 300, **opts: object) -> CleanPage:
    page = imaging.clean(RawPage(image=img, dpi=dpi, source=Source.SCANNER, label="test"), CleanOptions(**opts))  # type: ignore[arg-type]
    assert isinstance(page, CleanPage)
    return page


@pytest.fixture(scope="module")
def page() -> np.ndarray:
    return render()


# --- scans: skew, orientation, crop ----------------------------------------------------------------
@pytest.mark.parametrize("angle", [2.5, -3.7, 8.0])
def test_skew_is_measured_and_removed(page: np.ndarray, angle: float) -> None:
    clean = scan(rotate(page, angle))
    assert clean.skew == pytest.approx(angle, abs=0.3)
    assert clean.rotation == 0
    assert clean.dpi == 300
    assert clean.image.ndim == 2
    again = scan(clean.image)
    assert abs(again.skew) <= 0.2  # the output's text lines are level


def test_straight_page_is_left_alone(page: np.ndarray) -> None:
    clean = scan(page)
    assert clean.skew == 0 and clean.rotation == 0 and clean.flags == frozenset()
    assert clean.image.shape == page.shape  # never rescaled
    assert np.array_equal(clean.image, page)


def test_upside_down_page_comes_back_upright(page: np.ndarray) -> None:
    clean = scan(np.ascontiguousarray(page[::-1, ::-1]))
    assert clean.rotation == 180
    assert np.array_equal(clean.image, page)


@pytest.mark.parametrize(("turns", "rotation"), [(1, 90), (3, 270)])
def test_quarter_turned_page_comes_back_upright(page: np.ndarray, turns: int, rotation: int) -> None:
    turned = np.ascontiguousarray(np.rot90(page, turns))  # counter-clockwise quarter turns
    clean = scan(turned)
    assert clean.rotation == rotation
    assert np.array_equal(clean.image, page)


def test_skewed_and_upside_down_page(page: np.ndarray) -> None:
    clean = scan(rotate(np.ascontiguousarray(page[::-1, ::-1]), -3.0))
    assert clean.rotation == 180
    assert clean.skew == pytest.approx(-3.0, abs=0.3)


def test_orienter_not_asked_when_the_layout_cue_is_sure(page: np.ndarray) -> None:
    def orienter(image: np.ndarray, dpi: float) -> tuple[int, float]:
        raise AssertionError("a clear Vietnamese text page needs no OSD run")

    assert imaging.clean(RawPage(page[::-1, ::-1].copy(), 300, Source.SCANNER), orient=orienter).rotation == 180
    assert imaging.clean(RawPage(page, 300, Source.SCANNER), orient=orienter).rotation == 0


def test_orienter_decides_when_the_layout_cue_is_weak(page: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imaging, "SURE_ORIENTATION", 99.0)  # every page counts as unsure
    monkeypatch.setattr(imaging, "SURE_MARKS", 99.0)  # for the diacritics cue too
    calls: list[tuple[tuple[int, ...], float]] = []

    def orienter(image: np.ndarray, dpi: float) -> tuple[int, float]:
        calls.append((image.shape, dpi))
        # a stand-in for tesseract OSD: "upright" only if the title's ink is in the top half
        ink = grey(image) < 128
        top, bottom = ink[: image.shape[0] // 2].sum(), ink[image.shape[0] // 2 :].sum()
        return (0 if top > bottom else 180), 10.0

    assert scan(page[::-1, ::-1].copy()).rotation == 180  # the heuristic, for comparison
    clean = imaging.clean(RawPage(page[::-1, ::-1].copy(), 300, Source.SCANNER), orient=orienter)
    assert calls == [(page.shape, 300)]
    assert clean.rotation == 180 and np.array_equal(clean.image, page)

    def stubborn(image: np.ndarray, dpi: float) -> tuple[int, float]:
        return 90, 3.0

    turned = imaging.clean(RawPage(page, 300, Source.SCANNER), orient=stubborn)
    assert turned.rotation == 90 and turned.image.shape == page.shape[::-1]


def never(image: np.ndarray, dpi: float) -> tuple[int, float]:
    raise AssertionError("the diacritics cue should have decided this page without OSD")


@pytest.mark.parametrize(("turns", "rotation"), [(0, 0), (2, 180), (1, 90), (3, 270)])
def test_diacritics_decide_when_the_layout_cue_is_weak(
    page: np.ndarray, monkeypatch: pytest.MonkeyPatch, turns: int, rotation: int
) -> None:
    monkeypatch.setattr(imaging, "SURE_ORIENTATION", 99.0)  # the layout cue never decides
    turned = np.ascontiguousarray(np.rot90(page, turns))
    clean = imaging.clean(RawPage(turned, 300, Source.SCANNER), orient=never)
    assert clean.rotation == rotation
    assert np.array_equal(clean.image, page)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "index"), [("scan200_colour_seal", 3), ("photocopy", 1)])
def test_diacritics_decide_bench_pages_the_layout_cue_is_unsure_about(kind: str, index: int) -> None:
    """Two pages of the fixed bench set whose layout score was under SURE_ORIENTATION (-0.05 and 0.02):
    a sans-serif colour scan turned upside down, and a photocopy; OSD ran on both before."""
    img, _, meta = corpus.make_item(kind, index)
    raw = RawPage(img, float(meta["dpi"]), Source.FILE)  # type: ignore[arg-type]
    assert imaging.clean(raw, orient=never).rotation == (180 if meta["upside_down"] else 0)
    flipped = RawPage(np.ascontiguousarray(img[::-1, ::-1]), raw.dpi, Source.FILE)
    assert imaging.clean(flipped, orient=never).rotation == (0 if meta["upside_down"] else 180)


CAPITALS = tuple("CONG HOA XA HOI CHU NGHIA VIET NAM - DOC LAP TU DO HANH PHUC 2025" for _ in range(16))


def speckled(img: np.ndarray, seed: int = 1) -> np.ndarray:
    """Toner specks all over the page: small marks above and below the letters alike."""
    out = img.copy()
    rng = np.random.default_rng(seed)
    for y, x in zip(rng.integers(0, img.shape[0], 40_000), rng.integers(0, img.shape[1], 40_000), strict=True):
        out[y : y + 4, x : x + 4] = 0
    return out


@pytest.mark.parametrize(
    "case",
    ["two lines", "capitals without marks", "speckled capitals"],
)
def test_orienter_still_asked_when_the_diacritics_cue_is_unsure(monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    """Too few marks, no marks, or marks as often below letters as above: not decided without OSD."""
    img = {
        "two lines": lambda: render(lines=2),
        "capitals without marks": lambda: render(text=CAPITALS),
        "speckled capitals": lambda: speckled(render(text=CAPITALS)),
    }[case]()
    score, decided = imaging._mark_score(img, 300, False)
    assert decided < imaging.MIN_MARKS or abs(score) < imaging.SURE_MARKS
    monkeypatch.setattr(imaging, "SURE_ORIENTATION", 99.0)
    calls: list[float] = []

    def orienter(image: np.ndarray, dpi: float) -> tuple[int, float]:
        calls.append(dpi)
        return 180, 9.0

    clean = imaging.clean(RawPage(img, 300, Source.SCANNER), orient=orienter)
    assert calls == [300] and clean.rotation == 180


def test_orienter_not_asked_about_blank_page() -> None:
    def orienter(image: np.ndarray, dpi: float) -> tuple[int, float]:
        raise AssertionError("no orientation for a blank page")

    clean = imaging.clean(RawPage(np.full((3508, 2480), 250, np.uint8), 300, Source.SCANNER), orient=orienter)
    assert PageFlag.BLANK in clean.flags and clean.rotation == 0


def test_options_switch_steps_off(page: np.ndarray) -> None:
    skewed = rotate(page, 2.0)
    kept = scan(skewed, deskew=False)
    assert kept.skew == 0 and np.array_equal(kept.image, skewed)
    upside = scan(np.ascontiguousarray(page[::-1, ::-1]), fix_orientation=False)
    assert upside.rotation == 0 and np.array_equal(upside.image, page[::-1, ::-1])


def test_dark_scanner_lid_border_is_cropped(page: np.ndarray) -> None:
    # the sheet (at 95 %) lies crooked on a scanner whose lid shows black around it
    sheet = cv2.resize(page, (2356, 3332), interpolation=cv2.INTER_AREA)
    bed = np.full((3508, 2480), 25, np.uint8)
    bed[88 : 88 + 3332, 62 : 62 + 2356] = sheet
    crooked = rotate(bed, 3.0, fill=25)[:3508, :2480]
    clean = scan(np.ascontiguousarray(crooked))
    assert clean.skew == pytest.approx(3.0, abs=0.3)
    h, w = clean.image.shape
    assert w == pytest.approx(2356, rel=0.02) and h == pytest.approx(3332, rel=0.02)
    g = clean.image
    edges = np.concatenate([g[:5].ravel(), g[-5:].ravel(), g[:, :5].ravel(), g[:, -5:].ravel()])
    assert np.percentile(edges, 1) > 200  # no lid left along the borders
    assert PageFlag.CUT_OFF not in clean.flags
    assert np.count_nonzero(g < 128) > 0.5 * np.count_nonzero(sheet < 128)  # the text is all still there


def test_grey_scanner_edge_band_is_removed(page: np.ndarray) -> None:
    banded = page.copy()
    banded[:, :25] = np.linspace(90, 130, 25, dtype=np.uint8)[None, :]  # a 2 mm grey band down the left edge
    clean = scan(banded)
    assert clean.image[:, :5].min() > 200
    assert PageFlag.CUT_OFF not in clean.flags


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_corpus_scans(seed: int) -> None:
    img, _ = corpus.render_page(seed)
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    degraded = corpus.degrade_scan(g, skew_deg=-2.2, upside_down=seed == 2, noise=6.0, border=True, seed=seed)
    clean = scan(degraded)
    assert clean.skew == pytest.approx(-2.2, abs=0.3)
    assert clean.rotation == (180 if seed == 2 else 0)
    assert clean.flags == frozenset()


# --- camera photos ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def framed() -> np.ndarray:
    return render(dpi=200, frame=True)


def shot(img: np.ndarray, **opts: object) -> CleanPage:
    return imaging.clean(RawPage(image=img, dpi=72, source=Source.CAMERA), CleanOptions(**opts))  # type: ignore[arg-type]


def assert_rectified(clean: CleanPage) -> None:
    h, w = clean.image.shape[:2]
    assert clean.perspective
    assert h / w == pytest.approx(math.sqrt(2), rel=0.01)  # A4 portrait
    assert clean.dpi >= 200 and w == pytest.approx(clean.dpi * 210 / 25.4, abs=2)
    margins = frame_margins_mm(clean.image, clean.dpi)
    # the sheet's edges are where they belong (less a safety crop of < 1 mm that keeps the desk out)
    assert margins == pytest.approx((9.4, 9.4, 9.4, 9.4), abs=0.7), margins
    assert abs(scan(grey(clean.image), clean.dpi).skew) <= 0.3  # text lines level
    paper = paper_patches(clean.image)
    assert paper.min() > 225 and paper.std() < 5, paper  # lighting evened out


@pytest.fixture(scope="module")
def desk_photo(framed: np.ndarray) -> np.ndarray:
    return photo(framed, CORNERS)


def test_camera_photo_is_rectified(desk_photo: np.ndarray) -> None:
    clean = shot(desk_photo)
    assert_rectified(clean)
    assert clean.rotation == 0
    assert clean.flags == frozenset()
    assert clean.image.ndim == 3 and not clean.colour


@pytest.mark.slow
def test_camera_photo_on_desk_of_similar_brightness(framed: np.ndarray) -> None:
    # a light grey desk only ~15 % darker than the paper, lit unevenly (so its bright side outshines
    # the paper's dark side): one global brightness threshold cannot separate them
    img = photo(framed, CORNERS, desk_level=(192, 190, 186), light=(0.55, 1.0), seed=3)
    assert_rectified(shot(img))


@pytest.mark.slow
def test_camera_photo_of_turned_sheet(framed: np.ndarray) -> None:
    # the sheet lies on its side (text running upwards) in a landscape photo
    corners = [(470.0, 2060.0), (560.0, 350.0), (2990.0, 420.0), (2930.0, 2130.0)]
    img = photo(framed, corners, size=(2400, 3200))  # landscape photo
    clean = shot(img)
    assert clean.rotation == 90
    assert_rectified(clean)


@pytest.mark.slow
def test_corpus_camera_photo() -> None:
    img, _ = corpus.render_page(4)
    shot_img, corners = corpus.camera_photo_with_corners(img, seed=4)
    clean = shot(shot_img)
    h, w = clean.image.shape[:2]
    assert clean.perspective and clean.rotation == 0
    assert h / w == pytest.approx(math.sqrt(2), rel=0.01)
    assert abs(scan(grey(clean.image), clean.dpi).skew) <= 0.3
    assert PageFlag.NO_PAGE_FOUND not in clean.flags and PageFlag.CUT_OFF not in clean.flags


def test_photo_without_sheet_outline_is_kept_whole_and_flattened(page: np.ndarray) -> None:
    # a close-up: the page fills the whole photo, so no outline can be found
    close = cv2.resize(page[300:1800, 150:2150], (2667, 2000), interpolation=cv2.INTER_LINEAR)
    yy, xx = np.mgrid[0 : close.shape[0], 0 : close.shape[1]].astype(np.float32)
    lit = (close * (0.55 + 0.45 * xx / close.shape[1])).astype(np.uint8)
    clean = shot(cv2.cvtColor(lit, cv2.COLOR_GRAY2RGB))
    assert PageFlag.NO_PAGE_FOUND in clean.flags and not clean.perspective
    h, w = clean.image.shape[:2]
    assert w / h == pytest.approx(2667 / 2000, rel=0.01)
    assert min(h, w) >= 200 / 25.4 * 210 - 1  # at least 200 dpi for a 210 mm wide page
    g = grey(clean.image)
    left, right = np.median(g[:, : w // 20]), np.median(g[:, -w // 20 :])
    assert abs(float(left) - float(right)) < 10 and left > 225  # the gradient is gone


def test_photo_option_on_a_file_source(desk_photo: np.ndarray) -> None:
    img = desk_photo
    clean = imaging.clean(RawPage(img, 96, Source.FILE), CleanOptions(photo=True))
    assert clean.perspective
    not_photo = imaging.clean(RawPage(img, 96, Source.CAMERA), CleanOptions(photo=False))
    assert not not_photo.perspective and not_photo.dpi == 96


# --- flags -----------------------------------------------------------------------------------------------
def test_blank_page_is_flagged_blank() -> None:
    rng = np.random.default_rng(0)
    blank = np.clip(rng.normal(244, 8, (3508, 2480)), 0, 255).astype(np.uint8)
    clean = scan(blank)
    assert PageFlag.BLANK in clean.flags
    assert clean.image.shape == blank.shape  # flagged, never dropped


@pytest.mark.parametrize("text", [("Đã xem.",), ("Bản sao",)])
def test_page_with_one_short_line_is_not_blank(text: tuple[str, ...]) -> None:
    clean = scan(render(text=text))
    assert PageFlag.BLANK not in clean.flags


def test_page_with_only_a_small_stamp_is_not_blank() -> None:
    img = np.full((3508, 2480, 3), 250, np.uint8)
    cv2.circle(img, (1700, 2900), 90, RED, 12)  # a 15 mm seal ring, nothing else
    clean = scan(img)
    assert PageFlag.BLANK not in clean.flags and clean.colour


def test_blurred_page_is_flagged(page: np.ndarray) -> None:
    assert PageFlag.BLURRED in scan(cv2.GaussianBlur(page, (0, 0), 4.5)).flags
    assert PageFlag.BLURRED not in scan(cv2.GaussianBlur(page, (0, 0), 0.8)).flags


def test_blur_is_judged_per_millimetre(page: np.ndarray) -> None:
    # the same physical blur at 200 dpi is judged like at 300 dpi
    small = cv2.resize(page, None, fx=2 / 3, fy=2 / 3, interpolation=cv2.INTER_AREA)
    assert PageFlag.BLURRED in scan(cv2.GaussianBlur(small, (0, 0), 3.0), dpi=200).flags
    assert PageFlag.BLURRED not in scan(small, dpi=200).flags


def test_text_cut_at_the_edge_is_flagged(page: np.ndarray) -> None:
    assert PageFlag.CUT_OFF in scan(np.ascontiguousarray(page[:, 400:])).flags  # text runs off the left edge
    assert PageFlag.CUT_OFF not in scan(page).flags


@pytest.mark.slow
def test_sheet_running_out_of_the_photo_is_flagged(framed: np.ndarray) -> None:
    corners = [(700.0, -250.0), (2080.0, -330.0), (2250.0, 2300.0), (560.0, 2180.0)]
    clean = shot(photo(framed, corners))
    assert PageFlag.CUT_OFF in clean.flags


@pytest.mark.slow
def test_dark_photo_is_flagged_too_dark(framed: np.ndarray) -> None:
    dark = shot(photo(framed, CORNERS, light=(0.25, 0.35)))
    assert PageFlag.TOO_DARK in dark.flags


def test_dark_scan_is_flagged_too_dark(page: np.ndarray) -> None:
    assert PageFlag.TOO_DARK in scan((page * 0.35).astype(np.uint8)).flags


# --- colour ----------------------------------------------------------------------------------------------
def jpeg(img: np.ndarray, quality: int = 60) -> np.ndarray:
    _, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded: np.ndarray = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return decoded


def test_red_seal_is_colour() -> None:
    clean = scan(jpeg(render(seal=True)))
    assert clean.colour and clean.image.ndim == 3


def test_black_text_is_not_colour_even_after_jpeg() -> None:
    clean = scan(jpeg(render(rgb=True), 50))
    assert not clean.colour
    assert clean.image.ndim == 3  # RGB in, RGB out: the encoder decides about grey


@pytest.mark.slow
def test_colour_seal_in_a_photo(framed: np.ndarray) -> None:
    sealed = render(dpi=200, frame=True, seal=True)
    assert shot(photo(sealed, CORNERS)).colour


# --- input ----------------------------------------------------------------------------------------------
def test_rgba_and_single_channel_inputs(page: np.ndarray) -> None:
    rgba = np.dstack([page, page, page, np.full_like(page, 255)])
    assert scan(rgba).image.shape == (*page.shape, 3)
    assert scan(page[..., None]).image.shape == page.shape


@pytest.mark.parametrize(
    "bad",
    [np.zeros((0, 0), np.uint8), np.zeros((10, 10), np.float32), np.zeros((10, 10, 2), np.uint8)],
)
def test_not_an_image(bad: np.ndarray) -> None:
    with pytest.raises(NotAnImage):
        scan(bad)


def test_missing_dpi_falls_back(page: np.ndarray) -> None:
    assert scan(page, dpi=0).dpi == imaging.FALLBACK_DPI


# --- images too small or too narrow to be a page ---------------------------------------------------
def stripe(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Paper with a dark bar across its middle and some noise: not blank, not uniform."""
    img = np.random.default_rng(seed).integers(215, 256, size=shape, dtype=np.uint8)
    h, w = shape[:2]
    img[h // 3 : h // 3 + max(1, h // 10), w // 8 : w - w // 8] = 20
    return img


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (3, 500), (500, 3), (1, 1, 3), (2, 2, 3), (3, 500, 3)])
@pytest.mark.parametrize("source", [Source.SCANNER, Source.FILE, Source.CAMERA])
@pytest.mark.parametrize("dpi", [72.0, 300.0, 2400.0, 0.0])
def test_a_tiny_image_is_refused_in_the_officers_words(shape: tuple[int, ...], source: Source, dpi: float) -> None:
    for image in (stripe(shape), np.full(shape, 240, np.uint8)):
        with pytest.raises(ImageTooSmall) as err:
            imaging.clean(RawPage(image=image, dpi=dpi, source=source))
        assert message_for(err.value) == MESSAGES_VI["image_too_small"]
        assert f"{shape[1]}x{shape[0]} px" in str(err.value)


@pytest.mark.parametrize("dpi", [72.0, 300.0, 2400.0])
@pytest.mark.parametrize("rgb", [False, True])
def test_the_smallest_scan_is_cleaned_and_one_pixel_less_is_refused(dpi: float, rgb: bool) -> None:
    side = max(imaging.MIN_PAGE_PX, math.ceil(imaging.MIN_PAGE_MM / imaging.MM_PER_INCH * dpi))
    for shape in ((side, 6 * side), (6 * side, side), (side, side)):
        image = stripe((*shape, 3) if rgb else shape)
        page = imaging.clean(RawPage(image=image, dpi=dpi, source=Source.SCANNER))
        assert min(page.image.shape[:2]) >= side - 1 and page.dpi == dpi
        with pytest.raises(ImageTooSmall):
            imaging.clean(RawPage(image=image[: shape[0] - 1, : shape[1] - 1], dpi=dpi, source=Source.SCANNER))


@pytest.mark.parametrize("rgb", [False, True])
def test_a_photo_is_at_least_so_wide_and_at_most_so_long(rgb: bool) -> None:
    side = imaging.MIN_PAGE_PX
    longest = int(imaging.MAX_PHOTO_ASPECT * side)
    for shape in ((side, longest), (longest, side), (side, side)):
        page = imaging.clean(RawPage(image=stripe((*shape, 3) if rgb else shape), dpi=0.0, source=Source.CAMERA))
        assert page.image.size > 0 and page.dpi >= imaging.MIN_PHOTO_DPI
    for shape in ((side, longest + 1), (longest + 1, side), (side - 1, side - 1)):
        with pytest.raises(ImageTooSmall):
            imaging.clean(RawPage(image=stripe((*shape, 3) if rgb else shape), dpi=0.0, source=Source.CAMERA))


def test_an_uploaded_tiny_image_fails_its_document_with_that_error(tmp_path: Path) -> None:
    """The upload's path: the file decoded page by page, then the whole digitize path."""
    from appliance import pipeline

    icon = tmp_path / "icon.png"
    Image.fromarray(stripe((2, 2, 3))).save(icon)
    with pytest.raises(ImageTooSmall):
        pipeline.digitize(pipeline.file_pages([("icon.png", icon)]), pipeline.PipelineOptions(workers=1))


# --- issue 14: OCR copy without coloured ink, glare and curl flags ---------------------------------------


def test_ocr_copy_lifts_seal_and_tint_but_keeps_text_under_the_seal() -> None:
    page = corpus.render_layout(seed=5, dpi=150, colour=True, seal=True)
    img = page.image
    text = imaging.text_image(img, 150)
    r, g, b = (img[..., i].astype(int) for i in range(3))
    red = (r - np.minimum(g, b) > 120) & (r > 150)  # seal ink on paper
    black_under_red = (r < 60) & (g < 40) & (b < 40)  # text where the seal overlaps it
    assert red.sum() > 500
    assert text[red].mean() > 235  # the seal is (nearly) paper in the OCR copy
    assert text[black_under_red].mean() < 90  # the text under it is still ink
    assert np.percentile(text, 50) >= 250  # tinted paper becomes white


def _hard_photo(seed: int, *, curl: float, glare: float) -> np.ndarray:
    img, _ = corpus.render_page(seed)
    params = corpus.PhotoParams(tilt_deg=10.0, tilt_dir_deg=30.0, falloff=0.3, curl=curl, glare=glare, quality=85)
    return corpus.camera_photo(img, seed=seed, params=params)


@pytest.mark.slow
def test_glare_is_flagged_and_the_page_kept() -> None:
    clean = shot(_hard_photo(11, curl=0.0, glare=0.9))
    assert PageFlag.GLARE in clean.flags and clean.perspective
    assert clean.image.shape[0] > 2000  # still the whole page


@pytest.mark.slow
def test_flat_photo_with_falloff_has_no_glare_or_curl_flag() -> None:
    clean = shot(_hard_photo(11, curl=0.0, glare=0.0))
    assert PageFlag.GLARE not in clean.flags and PageFlag.CURLED not in clean.flags


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 5])  # the left and the right edge lifted over the body text
def test_curled_page_is_flagged(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    img, _ = corpus.render_page(12)
    params = corpus.PhotoParams(tilt_deg=5.0, curl=14.0, quality=85)
    photo = corpus.camera_photo(img, seed=seed, params=params)
    # Corrected (appliance.dewarp): its lines come out straight, so the flag is taken off again.
    clean = shot(photo)
    assert PageFlag.CURLED not in clean.flags and clean.perspective

    def keep(image: np.ndarray, small: np.ndarray, dpi: float, *, vertical: bool = False) -> dewarp.Straightened:
        return dewarp.Straightened(image, small, False, False, 0.0, 0.0, 0)

    monkeypatch.setattr(dewarp, "straighten", keep)  # a correction that does not help: the flag stays
    clean = shot(photo)
    assert PageFlag.CURLED in clean.flags and clean.perspective
