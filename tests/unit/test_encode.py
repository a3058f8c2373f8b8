"""encode(): mixed raster (lossless G4 text mask over a small JPEG background) and photo JPEG.

Pages come from the shared synthetic corpus (bench.corpus): realistic A4 Vietnamese administrative
pages with ~30-40 lines, optionally with a red seal and a blue signature.
"""

from __future__ import annotations

import io
import math
from functools import cache

import cv2
import numpy as np
import pikepdf
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from appliance.encode import encode, g4_bytes, jpeg_bytes
from appliance.model import CleanPage, EncodedPage, EncodeOptions, Encoding, ImageLayer
from bench.corpus import degrade_scan, render_page

pytestmark = pytest.mark.slow  # full A4 corpus pages (~1 s each to render)

A4_PT = (595.28, 841.89)


@cache
def corpus_page(seed: int, dpi: int, colour: bool, seal: bool) -> np.ndarray:
    img, _ = render_page(seed=seed, dpi=dpi, colour=colour, seal=seal)
    img.setflags(write=False)
    return img


def grey_page(seed: int = 0, dpi: int = 300) -> np.ndarray:
    return cv2.cvtColor(corpus_page(seed, dpi, False, False), cv2.COLOR_RGB2GRAY)


def clean(image: np.ndarray, dpi: float, colour: bool = False) -> CleanPage:
    return CleanPage(image=image, dpi=dpi, rotation=0, skew=0.0, colour=colour)


def decode_mask(layer: ImageLayer) -> np.ndarray:
    """Decode the G4 layer with pikepdf (as a grey image, 0 = black): True where ink is painted."""
    pdf = pikepdf.new()
    stream = pikepdf.Stream(
        pdf,
        layer.data,
        Type=pikepdf.Name.XObject,
        Subtype=pikepdf.Name.Image,
        Width=layer.width,
        Height=layer.height,
        BitsPerComponent=1,
        ColorSpace=pikepdf.Name.DeviceGray,
        Filter=pikepdf.Name.CCITTFaxDecode,
        DecodeParms=pikepdf.Dictionary(K=-1, Columns=layer.width, Rows=layer.height, BlackIs1=False),
    )
    image = np.asarray(pikepdf.PdfImage(stream).as_pil_image().convert("L"))
    assert image.shape == (layer.height, layer.width)
    return image < 128


def decode_jpeg(layer: ImageLayer) -> np.ndarray:
    assert layer.data[:2] == b"\xff\xd8"
    image = Image.open(io.BytesIO(layer.data))
    assert image.size == (layer.width, layer.height)
    assert image.mode == ("RGB" if layer.colour else "L")
    return np.asarray(image)


def red_seal(image: np.ndarray) -> np.ndarray:
    r, g, b = (image[..., i].astype(np.int16) for i in range(3))
    return (r - np.maximum(g, b) > 80) & (r > 120)


def blue_ink(image: np.ndarray) -> np.ndarray:
    r, g, b = (image[..., i].astype(np.int16) for i in range(3))
    return (b - np.maximum(r, g) > 50) & (b > 80)


def small(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A boolean map resized to `shape` (h, w): True where the cell is mostly True."""
    out = cv2.resize(mask.astype(np.uint8) * 255, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return out > 160


@pytest.fixture(scope="module")
def grey300() -> tuple[np.ndarray, EncodedPage]:
    image = grey_page(0, 300)
    return image, encode(clean(image, 300))


@pytest.fixture(scope="module")
def seal200() -> tuple[np.ndarray, EncodedPage]:
    image = corpus_page(1, 200, True, True)
    return image, encode(clean(image, 200, colour=True))


# --- MRC on an ordinary 300 dpi grey page -------------------------------------------------


def test_grey_page_is_mrc_with_full_resolution_mask_and_100dpi_grey_background(
    grey300: tuple[np.ndarray, EncodedPage],
) -> None:
    image, enc = grey300
    assert enc.encoding is Encoding.MRC
    assert enc.mask is not None and enc.mask.filter == "CCITTFaxDecode"
    assert (enc.mask.width, enc.mask.height) == (image.shape[1], image.shape[0])
    assert enc.dpi == pytest.approx(300)
    assert enc.upsampled_from is None
    assert enc.background.filter == "DCTDecode" and not enc.background.colour
    assert enc.background.width == pytest.approx(image.shape[1] / 3, abs=1)
    assert enc.background.height == pytest.approx(image.shape[0] / 3, abs=1)
    assert (enc.width_pt, enc.height_pt) == pytest.approx(A4_PT, abs=0.5)


def test_grey_300dpi_a4_text_page_is_under_100_kb(grey300: tuple[np.ndarray, EncodedPage]) -> None:
    _, enc = grey300
    print(f"300 dpi grey A4: mask {len(enc.mask.data)} B, background {len(enc.background.data)} B")
    assert enc.size <= 100 * 1024


def test_mask_holds_the_text_and_nothing_else(grey300: tuple[np.ndarray, EncodedPage]) -> None:
    image, enc = grey300
    assert enc.mask is not None
    mask = decode_mask(enc.mask)
    truth = image < 128
    recall = (mask & truth).sum() / truth.sum()
    precision = (mask & truth).sum() / mask.sum()
    assert recall >= 0.98, recall
    assert precision >= 0.80, precision  # the mask is a little bolder than the 50 % contour
    # nothing far from the text
    near_text = cv2.dilate(truth.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert (mask & ~near_text).sum() == 0


def test_every_diacritic_and_dot_is_kept(grey300: tuple[np.ndarray, EncodedPage]) -> None:
    image, enc = grey300
    assert enc.mask is not None
    mask = decode_mask(enc.mask)
    n, _, stats, _ = cv2.connectedComponentsWithStats((image < 128).astype(np.uint8), connectivity=8)
    marks = [s for s in stats[1:] if s[cv2.CC_STAT_AREA] <= 60]  # dots, tone marks, commas
    assert len(marks) > 200  # a Vietnamese page has many
    missing = [s for s in marks if not mask[s[1] : s[1] + s[3], s[0] : s[0] + s[2]].any()]
    assert missing == []


def test_background_has_the_text_removed(grey300: tuple[np.ndarray, EncodedPage]) -> None:
    image, enc = grey300
    bg = decode_jpeg(enc.background)
    text_cells = small(image < 128, bg.shape) | (
        cv2.resize(image, (bg.shape[1], bg.shape[0]), interpolation=cv2.INTER_AREA) < 200
    )
    assert text_cells.sum() > 1000
    assert bg[text_cells].min() >= 200  # filled with paper, not grey smudges of text
    assert len(enc.background.data) <= 10 * 1024


# --- colour page with a red seal and a blue signature ------------------------------------


def test_colour_200dpi_page_with_seal_is_under_150_kb(seal200: tuple[np.ndarray, EncodedPage]) -> None:
    image, enc = seal200
    assert enc.encoding is Encoding.MRC and enc.mask is not None
    assert enc.dpi == pytest.approx(200)
    assert (enc.mask.width, enc.mask.height) == (image.shape[1], image.shape[0])
    print(f"200 dpi colour A4 + seal: mask {len(enc.mask.data)} B, background {len(enc.background.data)} B")
    assert enc.size <= 150 * 1024


def test_seal_stays_red_and_signature_blue_in_the_background(
    seal200: tuple[np.ndarray, EncodedPage],
) -> None:
    image, enc = seal200
    bg = decode_jpeg(enc.background)
    assert enc.background.colour and bg.ndim == 3
    seal = small(red_seal(image), bg.shape[:2])
    sign = small(blue_ink(image), bg.shape[:2])
    assert seal.sum() > 50 and sign.sum() > 10
    r, g, b = (bg[..., i].astype(np.float32) for i in range(3))
    assert np.median(r[seal] - np.maximum(g[seal], b[seal])) > 60  # still clearly red
    assert np.median(b[sign] - np.maximum(r[sign], g[sign])) > 30  # still blue


def test_coloured_ink_stays_out_of_the_black_mask(seal200: tuple[np.ndarray, EncodedPage]) -> None:
    image, enc = seal200
    assert enc.mask is not None
    mask = decode_mask(enc.mask)
    seal, sign = red_seal(image), blue_ink(image)
    assert (mask & seal).sum() / seal.sum() < 0.01
    assert (mask & sign).sum() / sign.sum() < 0.01
    # while the black text is in the mask
    text = (image.max(axis=2) < 100) & ~seal
    assert (mask & text).sum() / text.sum() > 0.97


def test_rgb_page_without_colour_gets_a_grey_background() -> None:
    enc = encode(clean(corpus_page(0, 200, False, False), 200, colour=False))
    assert enc.encoding is Encoding.MRC
    assert not enc.background.colour


def test_seal_detected_even_when_the_page_is_not_flagged_colour(
    seal200: tuple[np.ndarray, EncodedPage],
) -> None:
    image, _ = seal200
    enc = encode(clean(image, 200, colour=False))
    assert enc.background.colour  # never lose a red seal to a grey background


# --- scans: noise, shading, speckles ------------------------------------------------------


def test_speckles_are_removed_but_marks_next_to_letters_are_kept() -> None:
    image = grey_page(2, 300).copy()
    truth = image < 128
    rng = np.random.default_rng(5)
    blank = cv2.dilate(truth.astype(np.uint8), np.ones((121, 121), np.uint8)) == 0
    ys, xs = np.nonzero(blank[200:-200, 200:-200])
    pick = rng.choice(len(ys), 300, replace=False)
    specks = [(int(ys[i]) + 200, int(xs[i]) + 200) for i in pick]
    for y, x in specks:
        image[y : y + 2, x : x + 2] = 30
    # small marks 6 px above the top of letters, like tone marks
    _, _, stats, _ = cv2.connectedComponentsWithStats(truth.astype(np.uint8), connectivity=8)
    letters = [s for s in stats[1:] if 25 < s[3] < 40 and s[2] < 30][:50]
    marks = []
    for x, y, w, _h, _a in letters:
        my, mx = int(y) - 8, int(x + w // 2)
        if image[my - 2 : my + 4, mx - 2 : mx + 4].min() > 200:
            image[my : my + 2, mx : mx + 2] = 30
            marks.append((my, mx))
    assert len(marks) >= 20
    enc = encode(clean(image, 300))
    assert enc.mask is not None
    mask = decode_mask(enc.mask)
    assert sum(bool(mask[y : y + 2, x : x + 2].any()) for y, x in specks) == 0
    assert all(mask[y : y + 2, x : x + 2].any() for y, x in marks)


def test_uneven_lighting_does_not_make_black_blobs() -> None:
    image = grey_page(3, 300)
    truth = image < 128
    h, w = image.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 1.0 - 0.55 * (xx / w) * (yy / h) - 0.15 * (yy / h)  # dark towards one corner
    shaded = np.clip(image.astype(np.float32) * light, 0, 255).astype(np.uint8)
    enc = encode(clean(shaded, 300))
    assert enc.mask is not None
    mask = decode_mask(enc.mask)
    blank = cv2.dilate(truth.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    assert (mask & blank).sum() / blank.sum() < 0.0005
    assert (mask & truth).sum() / truth.sum() > 0.97


def test_noisy_scan_stays_small_and_clean() -> None:
    image = degrade_scan(grey_page(4, 300), noise=12.0, border=False, seed=4)
    enc = encode(clean(image, 300))
    assert enc.encoding is Encoding.MRC and enc.mask is not None
    assert enc.size <= 100 * 1024
    mask = decode_mask(enc.mask)
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    tiny = int((stats[1:, cv2.CC_STAT_AREA] <= 3).sum())
    assert tiny < 0.05 * len(stats)  # noise did not turn into thousands of specks


# --- resolution rule ----------------------------------------------------------------------


def test_page_below_200_dpi_is_interpolated_to_200_and_recorded() -> None:
    image = corpus_page(0, 150, False, False)
    enc = encode(clean(image, 150))
    assert enc.mask is not None
    assert enc.dpi >= 200 and enc.dpi == pytest.approx(200, abs=0.5)
    assert enc.upsampled_from == 150
    assert enc.mask.width == math.ceil(image.shape[1] * 200 / 150)  # rounded up: never below 200
    assert (enc.width_pt, enc.height_pt) == pytest.approx(A4_PT, abs=0.5)  # same paper size


def test_custom_background_dpi() -> None:
    enc = encode(clean(grey_page(0, 300), 300), EncodeOptions(background_dpi=150))
    assert enc.background.width == pytest.approx(2480 / 2, abs=1)


# --- photo pages --------------------------------------------------------------------------


def photo_page(dpi: int = 300) -> np.ndarray:
    rng = np.random.default_rng(7)
    h, w = round(297 / 25.4 * dpi), round(210 / 25.4 * dpi)
    base = corpus_page(0, dpi, False, False).copy()
    field = cv2.resize(rng.uniform(30, 220, (12, 9, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0, 6, (h, w, 1)).astype(np.float32)
    photo = np.clip(field + grain, 0, 255).astype(np.uint8)
    y0, y1, x0, x1 = h // 5, h * 9 // 10, w // 10, w * 9 // 10
    base[y0:y1, x0:x1] = photo[y0:y1, x0:x1]
    return base


def test_photo_dominated_page_is_one_200dpi_colour_jpeg() -> None:
    image = photo_page(300)
    enc = encode(clean(image, 300, colour=True))
    assert enc.encoding is Encoding.JPEG
    assert enc.mask is None
    assert 200 <= enc.dpi < 200.5
    assert enc.background.colour and enc.background.filter == "DCTDecode"
    decoded = decode_jpeg(enc.background)
    assert decoded.shape[1] == math.ceil(image.shape[1] * 200 / 300)
    print(f"photo page 300->200 dpi JPEG: {enc.size} B")


# --- the G4 codec itself ------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    w=st.integers(1, 130),
    h=st.integers(1, 60),
    density=st.sampled_from([0.0, 0.05, 0.5, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_g4_is_lossless(w: int, h: int, density: float, seed: int) -> None:
    mask = np.random.default_rng(seed).random((h, w)) < density
    layer = ImageLayer(data=g4_bytes(mask), width=w, height=h, filter="CCITTFaxDecode", colour=False)
    assert np.array_equal(decode_mask(layer), mask)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        encode(clean(np.zeros((10, 10, 4), np.uint8), 300))
    with pytest.raises(ValueError):
        encode(clean(np.zeros((10, 10), np.float32), 300))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        encode(clean(np.zeros((10, 10), np.uint8), 0))


def test_blank_page_encodes_to_an_empty_mask() -> None:
    enc = encode(clean(np.full((3508, 2480), 250, np.uint8), 300))
    assert enc.encoding is Encoding.MRC and enc.mask is not None
    assert not decode_mask(enc.mask).any()
    assert enc.size < 10 * 1024


@pytest.mark.parametrize(("bw", "bh"), [(401, 399), (398, 403), (37, 1201)])
def test_despeckle_handles_sparse_components_of_any_size(bw: int, bh: int) -> None:
    # a thin frame (sparse, large) of odd size, with specks near and far from it
    ink = np.zeros((1400, 1400), dtype=bool)
    ink[10 : 10 + bh, 10] = ink[10 : 10 + bh, 10 + bw - 1] = True
    ink[10, 10 : 10 + bw] = ink[10 + bh - 1, 10 : 10 + bw] = True
    ink[14, 14] = True  # next to the frame: kept
    ink[1390, 1390] = True  # isolated: dropped
    from appliance.encode import _despeckle

    out = _despeckle(ink, 300.0)
    assert out[14, 14] and not out[1390, 1390]
    assert out[10 : 10 + bh, 10].all()


# --- any size, any noise, any quality (issue 11: "broken data stream" on a noisy page) ------


def noisy_page(w: int, h: int, colour: bool, paper: int, sigma: float, seed: int) -> np.ndarray:
    """A page of paper level `paper` with lines of dark 'text' and strong sensor noise."""
    rng = np.random.default_rng(seed)
    page = np.full((h, w, 3) if colour else (h, w), paper, np.float32)
    for y in range(h // 10, h - h // 10, max(2, h // 40)):
        page[y : y + max(1, h // 150), w // 10 : w - w // 10] = max(0, paper - 180)
    if colour:
        page[h // 3 : h // 2, w // 2 : w * 3 // 4] = (200, 30, 30)  # a red seal's area
    page += rng.normal(0.0, sigma, page.shape).astype(np.float32)
    return np.clip(page, 0, 255).astype(np.uint8)


@settings(max_examples=20, deadline=None)
@given(
    w=st.integers(1, 1800),
    h=st.integers(1, 2400),
    colour=st.booleans(),
    paper=st.integers(0, 255),
    sigma=st.floats(0.0, 90.0),
    quality=st.integers(10, 95),  # the range settings.encode.jpeg_quality accepts
    dpi=st.sampled_from([150.0, 200.0, 300.0]),
    seed=st.integers(0, 2**16),
)
@example(w=1654, h=2339, colour=True, paper=250, sigma=60.0, quality=90, dpi=200.0, seed=11)  # the report
@example(w=1653, h=2337, colour=False, paper=250, sigma=90.0, quality=95, dpi=200.0, seed=1)
@example(w=1, h=2339, colour=True, paper=20, sigma=30.0, quality=45, dpi=300.0, seed=2)  # thinner than 3 px
def test_noisy_page_of_any_size_encodes_at_any_quality(
    w: int, h: int, colour: bool, paper: int, sigma: float, quality: int, dpi: float, seed: int
) -> None:
    image = noisy_page(w, h, colour, paper, sigma, seed)
    enc = encode(clean(image, dpi, colour=colour), EncodeOptions(jpeg_quality=quality))
    assert (enc.width_pt, enc.height_pt) == pytest.approx((w * 72 / dpi, h * 72 / dpi))
    background = decode_jpeg(enc.background)  # a whole JPEG of the declared size and mode
    assert background.size > 0
    if enc.mask is not None:
        assert decode_mask(enc.mask).shape == (enc.mask.height, enc.mask.width)


@settings(max_examples=40, deadline=None)
@given(
    w=st.integers(1, 700),
    h=st.integers(1, 700),
    colour=st.booleans(),
    full_chroma=st.booleans(),
    quality=st.integers(10, 95),
    seed=st.integers(0, 2**16),
)
@example(w=300, h=400, colour=True, full_chroma=True, quality=90, seed=0)  # > 1 byte per pixel
def test_jpeg_layer_of_pure_noise_is_complete(
    w: int, h: int, colour: bool, full_chroma: bool, quality: int, seed: int
) -> None:
    # Uniform noise is the worst case for JPEG: it may need more bytes than the image has pixels.
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3) if colour else (h, w), dtype=np.uint8)
    data = jpeg_bytes(image, quality, full_chroma=full_chroma)
    layer = ImageLayer(data=data, width=w, height=h, filter="DCTDecode", colour=colour)
    decoded = decode_jpeg(layer).astype(np.int16)
    assert data[-2:] == b"\xff\xd9"  # ends with EOI: nothing cut off
    if quality >= 90 and (full_chroma or not colour):
        assert np.abs(decoded - image).mean() < 12  # the pixels, not a grey placeholder
