"""Image cleaning: one captured page in, one upright, deskewed, cropped page out.

``clean(raw) -> CleanPage`` is a pure step (OpenCV + numpy, no subprocesses):

- scans (scanner or file): crop away dark scanner-lid borders, deskew, fix 0/90/180/270 orientation;
- camera photos: find the sheet on the desk, rectify its perspective to an A4-shaped page of at least
  200 dpi, even out the lighting, straighten the text lines of a curled page (``appliance.dewarp``),
  then deskew and orient as for scans.

Every page comes out (a page is never dropped); doubtful pages carry flags for the officer.
All analysis runs on downscaled copies (about 100 dpi); the full-resolution image is resampled once.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeAlias

import cv2 as _cv2
import numpy as np
import numpy.typing as npt

from appliance import dewarp
from appliance.errors import ImageTooSmall, NotAnImage
from appliance.model import CleanOptions, CleanPage, PageFlag, PageImage, RawPage, Source

log = logging.getLogger(__name__)

# OpenCV's stubs type every array as MatLike; this module keeps its own PageImage/Mask types instead.
cv2: Any = _cv2

Orienter: TypeAlias = Callable[[PageImage, float], tuple[int, float]]
"""(upright-or-not page image, dpi) -> (clockwise rotation that makes it upright, confidence)."""

Mask: TypeAlias = npt.NDArray[np.uint8]  # 0 / 255
Points: TypeAlias = npt.NDArray[np.float32]  # (N, 2) x, y

MM_PER_INCH = 25.4
ANALYSIS_DPI = 100.0  # about the resolution of the downscaled copies all measurements run on
A4_SHORT_MM = 210.0
A4_ASPECT = 297.0 / 210.0
MIN_PHOTO_DPI = 200.0  # rule: digitized pages are at least 200 dpi
MAX_PHOTO_DPI = 400.0
FALLBACK_DPI = 300.0  # when a file carries no usable resolution
# What a capture must measure to be taken for a page (else ImageTooSmall): its shorter side in pixels (a
# line of text at 200 dpi is about 60 px tall) and, for a scan at its resolution, in millimetres. A photo
# becomes a page 210 mm wide at 200-400 dpi, so its length is capped too: at most MAX_PHOTO_ASPECT times
# its width keeps the page under tesseract's 32767 px (and the sheet finder's copies a few pixels across).
MIN_PAGE_PX = 64
MIN_PAGE_MM = 10.0
MAX_PHOTO_ASPECT = 8.0

MAX_SKEW_DEG = 10.0
BLANK_INK_MM2 = 3.0  # less text-like ink than about two small letters: blank
BLUR_RATIO = 0.55  # edge gradient / contrast at 200 dpi; about a 0.23 mm blur (tesseract copes to ~0.3 mm)
DARK_PAPER = 100  # paper brightness (0..255) below which the page is too dark
COLOUR_MIN_MM2 = 10.0  # strongly saturated area that counts as colour content (seal, signature)
# |layout score| from which the ink-above-vs-below cue decides orientation on its own. Vietnamese
# text pages score 0.25-0.7 (upright positive, upside-down negative); weaker pages go to the orienter
# (tesseract OSD, ~1 s a page), so OSD runs only where the cheap cue is unsure.
SURE_ORIENTATION = 0.2
# The second cheap cue, asked when the layout score is unsure: small marks (diacritics, i-dots) sit just
# above a letter on an upright page, far more often than just below it (only the dot below, nặng).
# Measured on the bench's 65 varied pages (fonts, photocopies, photos) at MARKS_DPI: upright pages score
# 0.38-0.98 (the same page turned 180 degrees the opposite), except two photocopies at 0.18-0.26, whose
# toner joins marks to letters; those, and pages with fewer than MIN_MARKS decided marks, go to the orienter.
MARKS_DPI = 150.0
SURE_MARKS = 0.35
MIN_MARKS = 50

_DEFAULT_OPTIONS = CleanOptions()


def clean(raw: RawPage, opts: CleanOptions = _DEFAULT_OPTIONS, orient: Orienter | None = None) -> CleanPage:
    """Return the cleaned page: upright, deskewed, cropped; flags for doubtful pages.

    ``orient`` (e.g. a tesseract-OSD based function) decides the 0/90/180/270 rotation when given;
    otherwise a fast ink-distribution heuristic does. NotAnImage for an array that is no image,
    ImageTooSmall for one too small or too narrow to be a page.
    """
    image = _normalise(raw.image)
    photo = opts.photo if opts.photo is not None else raw.source is Source.CAMERA
    dpi = _scan_dpi(raw.dpi)
    _check_size(image, None if photo else dpi)
    page = _clean_photo(image, opts, orient) if photo else _clean_scan(image, dpi, opts, orient)
    if page.image.ndim == 3:
        page = replace(page, ocr_image=text_image(page.image, page.dpi, margin_mm=3.0 if page.perspective else 0.0))
    log.debug(
        "cleaned %s: %dx%d %.0f dpi, rotation %d, skew %.2f, flags %s",
        raw.label or "page",
        page.image.shape[1],
        page.image.shape[0],
        page.dpi,
        page.rotation,
        page.skew,
        sorted(page.flags),
    )
    return page


# --- the grey copy for OCR ---------------------------------------------------------------
# Chroma (max - min channel, paper-normalised) from which ink counts as coloured, and where it is
# fully so; coloured ink is brightened by up to INK_LIFT (a red seal's or blue signature's brightest
# channel then reaches the paper), while black text under a seal stays dark in that channel.
CHROMA_FROM, CHROMA_FULL = 30, 70
INK_LIFT = 1.5
TEXT_BAND_ROWS = 256  # rows per band: a whole-page pass held seven page-sized temporaries (~60 MB at A4 300 dpi)


def text_image(image: PageImage, dpi: float, *, margin_mm: float = 0.0) -> PageImage:
    """Grey copy of an RGB page for OCR: dark text kept, seals, signatures and paper tint taken out.

    Each channel is divided by the paper's colour (tinted paper becomes white); a pixel's value is its
    brightest channel, in which red and blue ink are light but black ink stays black, also where it
    lies under a seal; clearly coloured pixels are brightened further. ``margin_mm`` whitens a band
    along the edges (a rectified photo's edge may carry a sliver of the desk). uint8 throughout.
    """
    small = _shrink(image, max(1, round(dpi / 25.0)))
    flat = small.reshape(-1, 3)
    value = flat.max(axis=1)
    bright = flat[value >= np.percentile(value, 60)]
    paper = np.median(bright, axis=0) if len(bright) else np.full(3, 255.0)
    ramp = np.clip((np.arange(256, dtype=np.float32) - CHROMA_FROM) / (CHROMA_FULL - CHROMA_FROM), 0, 1)
    gain = np.round(128 * (1 + (INK_LIFT - 1) * ramp)).astype(np.uint8)
    out: PageImage = np.empty(image.shape[:2], np.uint8)
    for y0 in range(0, image.shape[0], TEXT_BAND_ROWS):  # per pixel: bands keep the temporaries small
        band = image[y0 : y0 + TEXT_BAND_ROWS]
        channels = [
            cv2.convertScaleAbs(c, alpha=255.0 / max(float(level), 1.0))
            for c, level in zip(cv2.split(band), paper, strict=True)
        ]
        hi = cv2.max(cv2.max(channels[0], channels[1]), channels[2])
        lo = cv2.min(cv2.min(channels[0], channels[1]), channels[2])
        chroma = cv2.subtract(hi, lo)
        out[y0 : y0 + band.shape[0]] = cv2.multiply(hi, cv2.LUT(chroma, gain), scale=1 / 128, dtype=cv2.CV_8U)
    if margin_mm > 0:
        m = round(margin_mm * dpi / MM_PER_INCH)
        out[:m], out[-m:], out[:, :m], out[:, -m:] = 255, 255, 255, 255
    return out


# --- what can be a page ------------------------------------------------------------------
def _check_size(image: PageImage, scan_dpi: float | None) -> None:
    """ImageTooSmall unless the capture can be a page: a scan (at `scan_dpi`) or a photo (None)."""
    height, width = image.shape[:2]
    short, long = sorted((height, width))
    if short < MIN_PAGE_PX:
        raise ImageTooSmall(f"{width}x{height} px: a page is at least {MIN_PAGE_PX} px across")
    if scan_dpi is not None and short * MM_PER_INCH / scan_dpi < MIN_PAGE_MM:
        raise ImageTooSmall(
            f"{width}x{height} px at {scan_dpi:.0f} dpi: a page is at least {MIN_PAGE_MM:.0f} mm across"
        )
    if scan_dpi is None and long > MAX_PHOTO_ASPECT * short:
        raise ImageTooSmall(f"{width}x{height} px photo: longer than {MAX_PHOTO_ASPECT:.0f} times its width")


def _scan_dpi(dpi: float) -> float:
    return dpi if math.isfinite(dpi) and dpi > 0 else FALLBACK_DPI


# --- scans -------------------------------------------------------------------------------
def _clean_scan(image: PageImage, dpi: float, opts: CleanOptions, orient: Orienter | None) -> CleanPage:
    height, width = image.shape[:2]
    k = max(1, round(dpi / ANALYSIS_DPI))
    scale = 1.0 / k
    px_mm = dpi / k / MM_PER_INCH  # analysis pixels per millimetre
    small = _shrink(image, k)
    grey = _grey(small)
    paper = _percentile(grey, 90)

    sheet = _find_scan_sheet(grey, paper) if opts.crop else None
    ink = _ink_mask(grey, paper)
    if sheet is not None:
        inside = np.zeros_like(grey)
        cv2.fillPoly(inside, [np.round(sheet).astype(np.int32)], 255)
        ink = cv2.bitwise_and(ink, inside)
    skew, vertical = _measure_skew(ink)
    if not opts.deskew or abs(skew) < 0.02:
        skew = 0.0

    # One affine transform: rotate by -skew and crop to the sheet (or keep the canvas, grown to keep all ink).
    fill = _paper_colour(small, grey, paper)
    if sheet is not None:
        region = (sheet + 0.5) * k - 0.5
        centre = region.mean(axis=0)
    else:
        region = None
        centre = np.array([width / 2.0, height / 2.0], dtype=np.float32)
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), -skew, 1.0)
    if region is not None:
        x0, y0, x1, y1 = _bounds(_affine(region, matrix))
    else:
        x0, y0, x1, y1 = 0.0, 0.0, float(width), float(height)
        ink_box = _ink_corners(ink)
        if ink_box is not None:
            # Grow the canvas where rotation would push ink out; keep the ink's own margin (<= 2 mm),
            # so text that touched the border before still does (CUT_OFF).
            margin = 2.0 * dpi / MM_PER_INCH
            bx0, by0, bx1, by1 = _bounds(ink_box * k)
            ix0, iy0, ix1, iy1 = _bounds(_affine(ink_box * k, matrix))
            x0 = min(x0, ix0 - min(margin, max(0.0, bx0)))
            y0 = min(y0, iy0 - min(margin, max(0.0, by0)))
            x1 = max(x1, ix1 + min(margin, max(0.0, width - bx1)))
            y1 = max(y1, iy1 + min(margin, max(0.0, height - by1)))
    x0, y0 = math.floor(x0), math.floor(y0)
    out_w, out_h = math.ceil(x1) - x0, math.ceil(y1) - y0
    matrix[0, 2] -= x0
    matrix[1, 2] -= y0

    if skew == 0.0 and (x0, y0, out_w, out_h) == (0, 0, width, height):
        out = image
    elif skew == 0.0:
        out = _crop_or_pad(image, x0, y0, out_w, out_h, fill)
    else:
        out = _warp_affine(image, matrix, out_w, out_h, fill)
    small_matrix = matrix.copy()
    small_matrix[:, 2] *= scale
    small_w, small_h = max(1, round(out_w * scale)), max(1, round(out_h * scale))
    small = _warp_affine(small, small_matrix, small_w, small_h, fill)
    if region is not None and sheet is not None:
        # Paint what lies outside the sheet (lid, shadow wedges) with the paper colour.
        out = _paint_outside(out, _affine(region, matrix), fill)
        small = _paint_outside(small, _affine(sheet, small_matrix), fill)
    return _finish(out, small, dpi, px_mm, opts, orient, skew=skew, vertical=vertical, paper=paper, flags=set())


# --- camera photos -----------------------------------------------------------------------
def _clean_photo(image: PageImage, opts: CleanOptions, orient: Orienter | None) -> CleanPage:
    height, width = image.shape[:2]
    k_mid = max(1, math.ceil(max(height, width) / 1600))
    mid = _shrink(image, k_mid)
    k_det = max(1, math.ceil(max(mid.shape[:2]) / 800))
    det = _shrink(mid, k_det)

    flags: set[PageFlag] = set()
    quad = _find_sheet(det) if opts.crop else None
    found = quad is not None
    if quad is None:
        if opts.crop:
            flags.add(PageFlag.NO_PAGE_FOUND)
        quad_full = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    else:
        quad_mid = _refine_quad(_grey(mid), (quad + 0.5) * k_det - 0.5)
        quad_full = (quad_mid + 0.5) * k_mid - 0.5
        dh, dw = det.shape[:2]
        edge = 0.006 * max(dh, dw)
        x, y = quad[:, 0], quad[:, 1]
        if np.any((x < edge) | (y < edge) | (x > dw - 1 - edge) | (y > dh - 1 - edge)):
            flags.add(PageFlag.CUT_OFF)  # the sheet runs out of the photo

    out_w, out_h, dpi = _page_size(quad_full, found, PageFlag.CUT_OFF in flags)
    inset = 0.0
    if found:  # push the sheet's own edge (known to about a pixel of `mid`) just off the canvas
        zoom = out_w / max(1.0, float(np.ptp(quad_full[:, 0])))
        inset = max(0.6 * dpi / MM_PER_INCH, 1.5 * k_mid * zoom)
    dst = np.array(
        [[-inset, -inset], [out_w + inset, -inset], [out_w + inset, out_h + inset], [-inset, out_h + inset]],
        dtype=np.float32,
    )
    homography: npt.NDArray[np.float64] = cv2.getPerspectiveTransform(quad_full, dst)

    # Analysis copy: the mid-size photo rectified at about ANALYSIS_DPI.
    a = ANALYSIS_DPI / dpi
    rect_w, rect_h = max(1, round(out_w * a)), max(1, round(out_h * a))
    mid_to_full = np.array([[k_mid, 0, (k_mid - 1) / 2], [0, k_mid, (k_mid - 1) / 2], [0, 0, 1]], dtype=np.float64)
    to_rect = np.diag([a, a, 1.0]) @ homography @ mid_to_full
    rect = cv2.warpPerspective(mid, to_rect, (rect_w, rect_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    grey = _grey(rect)
    background = _background(grey, ANALYSIS_DPI)
    paper = float(np.median(background))
    flat: PageImage = cv2.divide(grey, background, scale=255)
    analysis_ink = _ink_mask(flat, _percentile(flat, 90))
    skew, vertical = _measure_skew(analysis_ink)
    if found and _has_glare(background, ANALYSIS_DPI / MM_PER_INCH):
        flags.add(PageFlag.GLARE)
    if found and _is_curled(analysis_ink, vertical):
        flags.add(PageFlag.CURLED)
    if not opts.deskew or abs(skew) < 0.02:
        skew = 0.0

    rotate = np.vstack([cv2.getRotationMatrix2D((out_w / 2.0, out_h / 2.0), -skew, 1.0), [0.0, 0.0, 1.0]])
    upsampling = out_w > 1.2 * float(np.ptp(quad_full[:, 0]))
    out: PageImage = cv2.warpPerspective(
        image,
        rotate @ homography,
        (out_w, out_h),
        flags=cv2.INTER_CUBIC if upsampling else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    out = _flatten(out, dpi)
    if found and skew != 0.0:
        # Rotating the rectified page brings what lay beyond its outline into the corners: paint it white.
        outline = cv2.perspectiveTransform(quad_full.reshape(-1, 1, 2), rotate @ homography).reshape(-1, 2)
        centre = outline.mean(axis=0)
        outline = centre + (outline - centre) * (1 - 2 * inset / max(out_w, out_h))
        out = _paint_outside(out, outline, (255.0,) * (3 if out.ndim == 3 else 1))
    k_small = max(1, round(dpi / ANALYSIS_DPI))
    small = _shrink(out, k_small)
    if PageFlag.CURLED in flags:  # straighten the bent lines; the flag stays unless they came out straight
        fixed = dewarp.straighten(out, small, dpi, vertical=vertical)
        out, small = fixed.image, fixed.small
        if fixed.applied and fixed.straight:
            flags.discard(PageFlag.CURLED)
    return _finish(
        out,
        small,
        dpi,
        dpi / k_small / MM_PER_INCH,
        opts,
        orient,
        skew=skew,
        vertical=vertical,
        paper=paper,
        flags=flags,
        perspective=found,
        check_edges=found,
    )


GLARE_LEVELS = 18  # brightness above the page's smooth lighting (0..255) that counts as a highlight
GLARE_MM2 = 150.0  # ... over at least this area
CURL_DEG = 1.0  # spread of the text lines' angle across the page that counts as bent lines


def _has_glare(background: PageImage, px_mm: float) -> bool:
    """A highlight on the paper: the paper's brightness rises in a blob above a smooth lighting model.

    Uneven light (a gradient, a vignette) fits a quadratic surface; a lamp's reflection does not.
    The flattening divides most of it out; the page is flagged because text inside the blob may have
    been washed out (the officer should look, and retake the photo if words are missing)."""
    k = max(1, round(px_mm / 0.5))  # about 2 mm per sample
    small = _shrink(background, k).astype(np.float64)
    h, w = small.shape
    yy, xx = np.mgrid[0:h, 0:w]
    x, y = (xx / w - 0.5).ravel(), (yy / h - 0.5).ravel()
    design = np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=1)
    z = small.ravel()
    coef, *_ = np.linalg.lstsq(design, z, rcond=None)
    for _ in range(2):  # refit without the blob itself
        keep = z - design @ coef < GLARE_LEVELS / 2
        if keep.sum() < 0.5 * len(z):
            break
        coef, *_ = np.linalg.lstsq(design[keep], z[keep], rcond=None)
    residual = (z - design @ coef).reshape(h, w)
    area = float(np.count_nonzero(residual > GLARE_LEVELS)) * (k / px_mm) ** 2
    return area >= GLARE_MM2


def _is_curled(ink: Mask, vertical: bool) -> bool:
    """Text lines that are not straight: their angle differs across a 3 x 3 grid of the page."""
    if vertical:
        ink = cv2.rotate(ink, cv2.ROTATE_90_CLOCKWISE)
    h, w = ink.shape
    angles = []
    for i in range(3):
        for j in range(3):
            tile = ink[i * h // 3 : (i + 1) * h // 3, j * w // 3 : (j + 1) * w // 3]
            if cv2.countNonZero(tile) < 0.03 * tile.size:
                continue
            angle, turned = _measure_skew(tile)
            if not turned:
                angles.append(angle)
    return len(angles) >= 4 and max(angles) - min(angles) > CURL_DEG


def _page_size(quad: Points, found: bool, cut: bool) -> tuple[int, int, float]:
    """Output width, height (px) and dpi for the rectified page: short side 210 mm, >= 200 dpi."""
    tl, tr, br, bl = quad
    top, bottom = float(np.linalg.norm(tr - tl)), float(np.linalg.norm(br - bl))
    left, right = float(np.linalg.norm(bl - tl)), float(np.linalg.norm(br - tr))
    portrait = left + right >= top + bottom
    short = max(top, bottom) if portrait else max(left, right)
    aspect = (left + right) / (top + bottom) if portrait else (top + bottom) / (left + right)
    if found and not cut and 1.2 <= aspect <= 1.65:
        aspect = A4_ASPECT  # foreshortening makes the measured aspect unreliable; sheets here are A4
    dpi = min(MAX_PHOTO_DPI, max(MIN_PHOTO_DPI, short / (A4_SHORT_MM / MM_PER_INCH)))
    short_px = round(A4_SHORT_MM / MM_PER_INCH * dpi)
    long_px = round(short_px * aspect)
    return (short_px, long_px, dpi) if portrait else (long_px, short_px, dpi)


def _find_sheet(det: PageImage) -> Points | None:
    """Corners (tl, tr, br, bl) of the sheet in a ~800 px photo, or None when no outline convinces.

    Candidate outlines come from several cues (edges; brightness; colour distance from the paper
    at the centre; smoothness, as desks are textured and paper is not); the winner is the largest
    quadrilateral whose outline really separates two different regions.
    """
    grey = _grey(det)
    blur = cv2.GaussianBlur(grey, (5, 5), 0)
    h, w = grey.shape
    area = float(h * w)
    maps = _sheet_cues(det, grey)
    contours: list[Any] = []

    canny = cv2.Canny(blur, 20, 50)
    edges = cv2.dilate(canny, np.ones((3, 3), np.uint8))
    found, _ = cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    contours += [c for c in found if cv2.contourArea(c) > 0.05 * area]
    for cue, paper_is_low in ((blur, False), (maps[1], True), (maps[2], True)):
        mode = cv2.THRESH_BINARY_INV if paper_is_low else cv2.THRESH_BINARY
        _, mask = cv2.threshold(cue, 0, 255, mode + cv2.THRESH_OTSU)
        contours += _largest_blobs(mask, area)
    quads = [q for q in map(_quad_from_contour, contours) if q is not None]
    # Outlines made of straight edges (in the grey image and in the texture cue, where paper on paper
    # still shows): a region cue merges the sheet with whatever touches it (another sheet on a busy
    # desk), but the sheet's own four edges are still among the strongest long lines.
    quads += _line_quads(canny) + _line_quads(cv2.Canny(maps[2], 20, 50))

    best: tuple[float, Points] | None = None
    for quad in quads:
        quad_area = float(cv2.contourArea(quad))
        if not 0.05 * area <= quad_area <= 0.985 * area:
            continue
        sides = np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1)
        aspect = (sides[1] + sides[3]) / max(1.0, sides[0] + sides[2])
        if not 0.5 <= aspect <= 2.0:  # a sheet, even foreshortened or partly out of the photo
            continue
        support = _outline_support(maps, quad)
        score = quad_area / area * support**2
        log.debug("sheet candidate area %.2f aspect %.2f support %.2f", quad_area / area, aspect, support)
        if support >= 0.6 and (best is None or score > best[0]):
            best = (score, quad)
    return best[1] if best else None


def _line_quads(canny: Mask, keep: int = 8) -> list[Points]:
    """Quadrilaterals bounded by two pairs of the strongest long straight edges (Hough lines)."""
    h, w = canny.shape
    found = cv2.HoughLines(canny, 1, np.pi / 180, max(40, round(0.12 * min(h, w))))
    if found is None:
        return []
    lines: list[tuple[float, float]] = []
    for rho, theta in found[:, 0, :]:
        if all(abs(rho - r) > 12 or min(abs(theta - t), np.pi - abs(theta - t)) > np.radians(4) for r, t in lines):
            lines.append((float(rho), float(theta)))
        if len(lines) == keep:
            break

    def angle(a: float, b: float) -> float:
        d = abs(a - b) % np.pi
        return min(d, np.pi - d)

    pairs = [
        (lines[i], lines[j])
        for i, j in itertools.combinations(range(len(lines)), 2)
        if angle(lines[i][1], lines[j][1]) < np.radians(25) and _gap(lines[i], lines[j]) > 0.2 * min(h, w)
    ]
    quads: list[Points] = []
    for (a, b), (c, d) in itertools.combinations(pairs, 2):
        if angle(a[1], c[1]) < np.radians(55):
            continue
        corners = [_intersect(p, q) for p, q in ((a, c), (c, b), (b, d), (d, a))]
        if any(pt is None for pt in corners):
            continue
        pts = np.array(corners, dtype=np.float32)
        if np.any(pts < -0.02 * max(h, w)) or np.any(pts[:, 0] > 1.02 * w) or np.any(pts[:, 1] > 1.02 * h):
            continue
        quad = _plausible_quad(pts)
        if quad is not None:
            quads.append(quad)
    return quads


def _gap(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Distance between two nearly parallel lines (rho, theta) in Hesse normal form."""
    ra, ta = a
    rb, tb = b
    if abs(ta - tb) > np.pi / 2:  # same line direction with the normal flipped
        rb, tb = -rb, tb - np.pi if tb > ta else tb + np.pi
    return abs(ra - rb)


def _intersect(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float] | None:
    m = np.array([[math.cos(a[1]), math.sin(a[1])], [math.cos(b[1]), math.sin(b[1])]])
    if abs(np.linalg.det(m)) < 1e-6:
        return None
    x, y = np.linalg.solve(m, np.array([a[0], b[0]]))
    return float(x), float(y)


def _plausible_quad(pts: Points) -> Points | None:
    """The corners ordered (tl, tr, br, bl), or None unless they make a convex quad with sane angles."""
    pts = _order_corners(pts)
    if not cv2.isContourConvex(pts.reshape(-1, 1, 2)):
        return None
    for i in range(4):
        a, b, c = pts[i - 1], pts[i], pts[(i + 1) % 4]
        u, v = a - b, c - b
        cos = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-6))
        if abs(cos) > 0.6:  # corner angle outside ~53..127 degrees
            return None
    return pts


def _sheet_cues(det: PageImage, grey: PageImage) -> tuple[PageImage, PageImage, PageImage]:
    """(smoothed grey, colour distance from the paper, local texture), all uint8."""
    h, w = grey.shape
    blur = cv2.GaussianBlur(grey, (5, 5), 0)
    lab = cv2.cvtColor(det, cv2.COLOR_RGB2LAB) if det.ndim == 3 else cv2.merge([grey, grey, grey])
    lab = cv2.GaussianBlur(lab, (7, 7), 0).astype(np.float32)
    cy, cx = h // 2, w // 2
    centre = lab[cy - h // 6 : cy + h // 6, cx - w // 6 : cx + w // 6].reshape(-1, 3)
    paper_lab = np.median(centre[centre[:, 0] >= np.percentile(centre[:, 0], 50)], axis=0)
    diff = lab - paper_lab
    dist = cv2.sqrt(0.5 * diff[..., 0] ** 2 + diff[..., 1] ** 2 + diff[..., 2] ** 2)
    dist8 = np.clip(dist * 2.0, 0, 255).astype(np.uint8)
    g = grey.astype(np.float32)
    mean = cv2.blur(g, (7, 7))
    var = cv2.blur(g * g, (7, 7)) - mean * mean
    texture = cv2.GaussianBlur(cv2.sqrt(np.maximum(var, 0)), (9, 9), 0)
    tex8 = np.clip(texture * 8.0, 0, 255).astype(np.uint8)
    return blur, dist8, tex8


def _refine_quad(grey: PageImage, quad: Points, reach: int = 8) -> Points:
    """Move each side of ``quad`` onto the strongest edge within ``reach`` px (robust line fit)."""
    h, w = grey.shape
    blur = cv2.GaussianBlur(grey, (5, 5), 0)
    gx = cv2.Sobel(blur, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(blur, cv2.CV_32F, 0, 1, ksize=3)
    offsets = np.arange(-reach, reach + 1, dtype=np.float32)
    lines: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = []
    for i in range(4):
        a, b = quad[i].astype(np.float64), quad[(i + 1) % 4].astype(np.float64)
        d = b - a
        length = float(np.linalg.norm(d))
        normal = np.array([d[1], -d[0]]) / max(length, 1e-6)
        t = np.linspace(0.08, 0.92, 48)[:, None]
        base = a + t * d
        pos = base[:, None, :] + offsets[None, :, None] * normal[None, None, :]
        px = np.round(pos[..., 0]).astype(np.int32)
        py = np.round(pos[..., 1]).astype(np.int32)
        inside = ((px >= 0) & (px < w) & (py >= 0) & (py < h)).all(axis=1)
        fitted = (a, d / max(length, 1e-6))
        if np.count_nonzero(inside) >= 12:
            px, py, base = px[inside], py[inside], base[inside]
            strength = np.abs(gx[py, px] * normal[0] + gy[py, px] * normal[1])
            best = np.argmax(strength, axis=1)
            strong = strength[np.arange(len(best)), best] >= 20.0
            if np.count_nonzero(strong) >= 12:
                found = base[strong] + offsets[best[strong], None] * normal
                vx, vy, x0, y0 = cv2.fitLine(found.astype(np.float32), cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
                fitted = (np.array([x0, y0], dtype=np.float64), np.array([vx, vy], dtype=np.float64))
        lines.append(fitted)
    corners = []
    for i in range(4):
        (p1, v1), (p2, v2) = lines[i - 1], lines[i]
        m = np.array([[v1[0], -v2[0]], [v1[1], -v2[1]]])
        if abs(np.linalg.det(m)) < 1e-6:
            return quad
        s1 = np.linalg.solve(m, p2 - p1)[0]
        corners.append(p1 + s1 * v1)
    refined = np.array(corners, dtype=np.float32)
    if float(np.abs(refined - quad).max()) > 2.5 * reach:
        return quad  # the fit wandered off: keep the coarse outline
    return refined


def _largest_blobs(mask: Mask, area: float) -> list[Any]:
    """Outlines of the biggest regions of ``mask``, as they are and with gaps up to ~2 % bridged."""
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    k = max(5, round(0.02 * max(mask.shape)))
    bridged = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    blobs: list[Any] = []
    for m in (mask, bridged):
        found, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        big = sorted(found, key=cv2.contourArea, reverse=True)[:3]
        blobs += [c for c in big if cv2.contourArea(c) > 0.05 * area]
    return blobs


def _quad_from_contour(contour: Any) -> Points | None:
    hull = cv2.convexHull(contour)
    hull_area = float(cv2.contourArea(hull))
    if hull_area <= 0:
        return None
    peri = cv2.arcLength(hull, True)
    quad: npt.NDArray[np.int32] | None = None
    for eps in (0.01, 0.02, 0.03, 0.05, 0.08):
        approx = cv2.approxPolyDP(hull, eps * peri, True)
        if len(approx) == 4:
            quad = approx
            break
        if len(approx) < 4:
            break
    if quad is None:
        approx = cv2.approxPolyDP(hull, 0.005 * peri, True).reshape(-1, 2)
        if len(approx) < 4 or len(approx) > 16:
            return None
        best = max(itertools.combinations(range(len(approx)), 4), key=lambda ix: cv2.contourArea(approx[list(ix)]))
        quad = approx[list(best)]
    pts = _order_corners(quad.reshape(4, 2).astype(np.float32))
    if cv2.contourArea(pts) < 0.85 * hull_area or not cv2.isContourConvex(pts):
        return None
    for i in range(4):
        a, b, c = pts[i - 1], pts[i], pts[(i + 1) % 4]
        u, v = a - b, c - b
        cos = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-6))
        if abs(cos) > 0.6:  # corner angle outside ~53..127 degrees
            return None
    return pts


def _order_corners(pts: Points) -> Points:
    centre = pts.mean(axis=0)
    angles = np.arctan2(pts[:, 1] - centre[1], pts[:, 0] - centre[0])
    pts = pts[np.argsort(angles)]  # clockwise on screen (y down), starting near -180 deg
    first = int(np.argmin(pts[:, 0] + pts[:, 1]))
    return np.roll(pts, -first, axis=0)


def _outline_support(maps: tuple[PageImage, ...], quad: Points) -> float:
    """Share of the quad's outline (away from the photo border) that separates two different regions.

    A point counts when some cue differs across the outline both close to it (5 px) and further
    out (10 px): a step between two regions, not a printed line (a frame, a table) on the paper.
    0 unless at least two sides lie inside the photo and each of those is at least 40 % supported.
    """
    h, w = maps[0].shape
    thresholds = (10, 12, 14)  # grey, colour distance, texture
    hits = total = inner_sides = 0
    ratios: list[float] = []
    for i in range(4):
        a, b = quad[i], quad[(i + 1) % 4]
        length = float(np.linalg.norm(b - a))
        if length < 1:
            continue
        normal = np.array([b[1] - a[1], a[0] - b[0]], dtype=np.float32) / length  # outwards (clockwise)
        t = np.linspace(0.05, 0.95, max(8, int(length / 4)), dtype=np.float32)[:, None]
        line = a + t * (b - a)
        samples = [np.round(line + d * normal).astype(np.int32) for d in (-10.0, -5.0, 5.0, 10.0)]
        ok = np.ones(len(line), dtype=bool)
        for pts in samples:
            ok &= (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
        if np.count_nonzero(ok) < 0.5 * len(line):
            continue  # this side runs along (or outside) the photo border
        in10, in5, out5, out10 = (pts[ok] for pts in samples)
        near = np.zeros(len(in5), dtype=bool)
        far = np.zeros(len(in5), dtype=bool)
        for cue, thr in zip(maps, thresholds, strict=True):
            v = [cue[pts[:, 1], pts[:, 0]].astype(np.int16) for pts in (in10, in5, out5, out10)]
            near |= np.abs(v[1] - v[2]) >= thr
            far |= np.abs(v[0] - v[3]) >= thr
        hit = near & far
        ratios.append(np.count_nonzero(hit) / len(hit))
        inner_sides += 1
        hits += int(np.count_nonzero(hit))
        total += len(hit)
    weak = [r for r in ratios if r < 0.4]
    # One side may be weak when the other sides are clear: on a busy desk another sheet of paper can
    # lie against part of one edge (paper against paper shows almost no step).
    if len(weak) > 1 or (weak and (inner_sides < 4 or min(weak) < 0.1 or min(r for r in ratios if r >= 0.4) < 0.6)):
        return 0.0
    return hits / total if inner_sides >= 2 else 0.0


def _background(image: PageImage, dpi: float) -> PageImage:
    """Large-scale paper brightness (text and marks removed), same size as ``image``; never 0.

    A morphological closing at about 1 px/mm removes marks up to 4 cm; the odd-reflected padding keeps
    a lighting gradient straight up to the borders (flat padding would bend it there).
    """
    h, w = image.shape[:2]
    low = _shrink(image, max(1, round(dpi / MM_PER_INCH)))  # about 1 px per mm
    r = 24
    padded = _pad_odd(low, r)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (41, 41))
    padded = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_REPLICATE)
    padded = cv2.GaussianBlur(padded, (0, 0), 6)
    low = np.maximum(padded[r:-r, r:-r], 1)
    bg: PageImage = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
    return bg


def _pad_odd(image: PageImage, r: int) -> PageImage:
    """Pad by ``r`` pixels with point reflection (2*edge - mirror): linear ramps continue linearly."""
    f = image.astype(np.int16)
    mirror = cv2.copyMakeBorder(f, r, r, r, r, cv2.BORDER_REFLECT_101)
    h, w = f.shape[:2]
    edge = cv2.copyMakeBorder(f, r, r, r, r, cv2.BORDER_REPLICATE)
    odd: PageImage = np.clip(2 * edge - mirror, 0, 255).astype(np.uint8)
    odd[r : r + h, r : r + w] = image
    return odd


def _flatten(image: PageImage, dpi: float) -> PageImage:
    """Even out the lighting: divide each channel by its large-scale background."""
    flat: PageImage = cv2.divide(image, _background(image, dpi), scale=255)
    return flat


# --- shared finish: orientation, flags ----------------------------------------------------
def _finish(
    out: PageImage,
    small: PageImage,
    dpi: float,
    px_mm: float,
    opts: CleanOptions,
    orient: Orienter | None,
    *,
    skew: float,
    vertical: bool,
    paper: float,
    flags: set[PageFlag],
    perspective: bool = False,
    check_edges: bool = True,
) -> CleanPage:
    grey = _grey(small)
    level = _percentile(grey, 90)
    ink = _ink_mask(grey, level)
    stats = _components(ink, px_mm)
    blank = _ink_area_mm2(stats, ink.shape, px_mm) < BLANK_INK_MM2

    rotation = 0
    if opts.fix_orientation and not blank:
        rotation, score = _guess_rotation(ink, vertical, px_mm)
        if abs(score) < SURE_ORIENTATION:
            # The ink-layout cue is weak (sans-serif type, photocopies, few lines): look at the marks.
            marks, decided = _mark_score(out, dpi, vertical)
            if decided >= MIN_MARKS and abs(marks) >= SURE_MARKS:
                rotation = (90 if marks > 0 else 270) if vertical else (0 if marks > 0 else 180)
                log.debug("marks say %d (mark score %.2f of %d, layout score %.2f)", rotation, marks, decided, score)
            elif orient is not None:
                # Neither cue is sure (tables, capitals only, blurred marks): ask the orienter.
                rotation, confidence = orient(out, dpi)
                rotation = rotation % 360 if rotation % 90 == 0 else 0
                log.debug(
                    "orienter says %d (confidence %.2f, layout score %.2f, mark score %.2f of %d)",
                    rotation,
                    confidence,
                    score,
                    marks,
                    decided,
                )
    if rotation:
        code = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}[rotation]
        out = cv2.rotate(out, code)
        small = cv2.rotate(small, code)
        ink = cv2.rotate(ink, code)
        stats = _components(ink, px_mm)

    if blank:
        flags.add(PageFlag.BLANK)
    if min(paper, level) < DARK_PAPER:
        flags.add(PageFlag.TOO_DARK)
    if check_edges and not blank and _touches_edges(stats, ink.shape, px_mm):
        flags.add(PageFlag.CUT_OFF)
    if not blank and _is_blurred(out, ink, dpi, px_mm):
        flags.add(PageFlag.BLURRED)
    colour = small.ndim == 3 and _has_colour(small, px_mm)
    return CleanPage(
        image=out,
        dpi=dpi,
        rotation=rotation,
        skew=round(skew, 2),
        flags=frozenset(flags),
        colour=colour,
        perspective=perspective,
    )


def _guess_rotation(ink: Mask, vertical: bool, px_mm: float) -> tuple[int, float]:
    """Clockwise rotation that makes the text upright, from where the ink sits around the text lines,
    and the layout score it rests on (its magnitude says how sure the cue is)."""
    if vertical:
        score = _upright_score(cv2.rotate(ink, cv2.ROTATE_90_CLOCKWISE), px_mm)
        return (90 if score >= 0 else 270), score
    score = _upright_score(ink, px_mm)
    return (180 if score < -0.1 else 0), score


def _upright_score(ink: Mask, px_mm: float) -> float:
    """log(ink above / ink below the x-height band of the text lines); > 0 for upright Latin script.

    Vietnamese puts diacritics above (and ascenders and capitals reach up), far more than the
    descenders and dot-below marks reach down.
    """
    profile = cv2.reduce(ink, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel().astype(np.float32) / 255.0
    window = max(3, round(4.0 * px_mm)) | 1
    local_max = cv2.dilate(profile.reshape(-1, 1), np.ones((window, 1), np.uint8)).ravel()
    core = (profile >= 0.5 * local_max) & (profile > 0)
    above = below = 0.0
    edges = np.flatnonzero(np.diff(np.concatenate(([0], core.astype(np.int8), [0]))))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        size = stop - start
        if size < 3:
            continue
        lo, hi = max(0, start - size), min(len(profile), stop + size)
        above += float(profile[lo:start][~core[lo:start]].sum())
        below += float(profile[stop:hi][~core[stop:hi]].sum())
    return math.log((above + 1.0) / (below + 1.0))


def _mark_score(image: PageImage, dpi: float, vertical: bool) -> tuple[float, int]:
    """(up - down) / (up + down) over the page's small marks, and up + down; > 0 for upright text.

    A mark (a component lower than half the typical letter) counts as up when letter ink lies within
    0.6 letter heights below it and none above it, down in the opposite case; the others (commas,
    hyphens, marks between close lines) do not count. Runs on a ~150 dpi copy: at the 100 dpi of the
    other analysis, diacritics merge into their letters. ``vertical`` pages are scored turned 90
    degrees clockwise (as in :func:`_guess_rotation`).
    """
    k = max(1, round(dpi / MARKS_DPI))
    grey = _grey(_shrink(image, k))
    ink = _ink_mask(grey, _percentile(grey, 90))
    del grey
    if vertical:
        ink = cv2.rotate(ink, cv2.ROTATE_90_CLOCKWISE)
    px_mm = dpi / k / MM_PER_INCH
    _, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    width, height = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
    letters = (height >= px_mm) & (height <= 6 * px_mm) & (width <= 8 * px_mm)
    letters[0] = False  # the background
    if np.count_nonzero(letters) < MIN_MARKS:
        return 0.0, 0
    letter_h = float(np.median(height[letters]))
    body = letters & (height >= 0.6 * letter_h)
    mark = (
        (height < 0.5 * letter_h) & (width < 1.5 * letter_h) & (np.maximum(width, height) >= max(2.0, 0.15 * letter_h))
    )
    mark[0] = False
    integral = cv2.integral(body.astype(np.uint8)[labels])  # letter-body pixels, summed
    del labels
    idx = np.flatnonzero(mark)
    x0, y0 = stats[idx, cv2.CC_STAT_LEFT], stats[idx, cv2.CC_STAT_TOP]
    x1, y1 = x0 + width[idx], y0 + height[idx]
    reach = max(2, round(0.6 * letter_h))
    rows = ink.shape[0]

    def body_ink(top: npt.NDArray[np.int32], bottom: npt.NDArray[np.int32]) -> npt.NDArray[np.int64]:
        top, bottom = np.clip(top, 0, rows), np.clip(bottom, 0, rows)
        total: npt.NDArray[np.int64] = (
            integral[bottom, x1] - integral[top, x1] - integral[bottom, x0] + integral[top, x0]
        )
        return total

    below, above = body_ink(y1, y1 + reach), body_ink(y0 - reach, y0)
    up = int(np.count_nonzero((below > 0) & (above == 0)))
    down = int(np.count_nonzero((above > 0) & (below == 0)))
    decided = up + down
    return ((up - down) / decided if decided else 0.0), decided


def _components(ink: Mask, px_mm: float) -> npt.NDArray[np.int32]:
    """Stats (x, y, w, h, area) of the ink's connected components that could be marks, not dust."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    stats = stats[1:]
    min_side = max(2, round(0.4 * px_mm))
    keep = (stats[:, cv2.CC_STAT_AREA] >= 3) & (
        np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]) >= min_side
    )
    result: npt.NDArray[np.int32] = stats[keep]
    return result


def _ink_area_mm2(stats: npt.NDArray[np.int32], shape: tuple[int, ...], px_mm: float) -> float:
    h, w = shape[:2]
    x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    inner = (x > 0) & (y > 0) & (x + stats[:, cv2.CC_STAT_WIDTH] < w) & (y + stats[:, cv2.CC_STAT_HEIGHT] < h)
    return float(stats[inner, cv2.CC_STAT_AREA].sum()) / px_mm**2


def _touches_edges(stats: npt.NDArray[np.int32], shape: tuple[int, ...], px_mm: float) -> bool:
    """Marks (text, lines) that run into the image border: the page was cut off."""
    h, w = shape[:2]
    x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    cw, ch = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
    area = stats[:, cv2.CC_STAT_AREA] / px_mm**2
    deep = px_mm * 1.0
    touching = (
        ((x == 0) & (cw >= deep))
        | ((x + cw >= w) & (cw >= deep))
        | ((y == 0) & (ch >= deep))
        | ((y + ch >= h) & (ch >= deep))
    ) & (area >= 0.8)
    return int(np.count_nonzero(touching)) >= 2 or bool(np.any(touching & (area >= 10.0)))


def _is_blurred(image: PageImage, ink: Mask, dpi: float, px_mm: float) -> bool:
    """Sharpness of edges in the inkiest tiles, measured per millimetre (at 200 dpi)."""
    tile = round(16.0 * px_mm)
    h, w = ink.shape
    ty, tx = h // tile, w // tile
    if ty == 0 or tx == 0:
        return False
    counts = cv2.resize(ink[: ty * tile, : tx * tile], (tx, ty), interpolation=cv2.INTER_AREA).ravel()
    order = np.argsort(counts)[::-1]
    chosen = [i for i in order if 8 <= counts[i] <= 128][:6]
    if not chosen:
        return False
    f = dpi / MM_PER_INCH / px_mm
    to200 = 200.0 / dpi
    ratios = []
    for i in chosen:
        r, c = divmod(int(i), tx)
        y0, x0 = round(r * tile * f), round(c * tile * f)
        y1, x1 = round((r + 1) * tile * f), round((c + 1) * tile * f)
        crop = _grey(image[y0:y1, x0:x1])
        if abs(to200 - 1.0) > 0.05:
            interp = cv2.INTER_AREA if to200 < 1 else cv2.INTER_LINEAR
            crop = cv2.resize(crop, None, fx=to200, fy=to200, interpolation=interp)
        gx = cv2.Sobel(crop, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(crop, cv2.CV_32F, 0, 1, ksize=3)
        mag = cv2.magnitude(gx, gy)
        contrast = float(np.percentile(crop, 98)) - float(np.percentile(crop, 2))
        if contrast < 30:
            continue
        ratios.append(float(np.percentile(mag, 99.5)) / (4.0 * contrast))
    if not ratios:
        return False
    sharpness = float(np.median(ratios))
    log.debug("sharpness %.3f", sharpness)
    return sharpness < BLUR_RATIO


def _has_colour(small: PageImage, px_mm: float) -> bool:
    """Strongly saturated areas (seal, signature, photo); JPEG chroma noise is averaged out at ~100 dpi."""
    r, g, b = cv2.split(small)
    hi = cv2.max(cv2.max(r, g), b)
    chroma = cv2.subtract(hi, cv2.min(cv2.min(r, g), b))
    # saturated: chroma >= 60 and chroma >= 35 % of the brightest channel
    strong = cv2.bitwise_and(
        cv2.compare(chroma, 60, cv2.CMP_GE),
        cv2.compare(chroma, cv2.multiply(hi, 0.35, dtype=cv2.CV_8U), cv2.CMP_GE),
    )
    area = float(cv2.countNonZero(strong)) / px_mm**2
    return area >= COLOUR_MIN_MM2


# --- skew -----------------------------------------------------------------------------------
def _measure_skew(ink: Mask) -> tuple[float, bool]:
    """(counter-clockwise angle of the text lines in degrees, lines run vertically) from the ink mask.

    Projection-profile search: the ink's profile across the lines is sharpest at the lines' angle.
    """
    pts = cv2.findNonZero(ink)
    if pts is None or len(pts) < 200:
        return 0.0, False
    xy = pts.reshape(-1, 2).astype(np.float32)
    step = max(1, len(xy) // 20_000)
    coarse = xy[::step]
    angles = np.arange(-MAX_SKEW_DEG, MAX_SKEW_DEG + 0.01, 0.5)
    best = (-1.0, 0.0, False)
    for vertical in (False, True):
        for angle in angles:
            score = _profile_score(coarse, float(angle), vertical)
            if score > best[0]:
                best = (score, float(angle), vertical)
    _, angle0, vertical = best
    step = max(1, len(xy) // 100_000)
    fine_pts = xy[::step]
    fine = np.arange(angle0 - 0.6, angle0 + 0.61, 0.1)
    scores = np.array([_profile_score(fine_pts, float(a), vertical) for a in fine])
    i = int(np.argmax(scores))
    angle = float(fine[i])
    if 0 < i < len(fine) - 1:
        s0, s1, s2 = scores[i - 1], scores[i], scores[i + 1]
        denom = s0 - 2 * s1 + s2
        if denom < 0:
            angle += 0.1 * 0.5 * float(s0 - s2) / float(denom)
    return angle, vertical


def _profile_score(xy: Points, angle: float, vertical: bool) -> float:
    """Peakiness of the ink profile across lines at ``angle``: n_bins * sum(h^2) / N^2."""
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    x, y = xy[:, 0], xy[:, 1]
    key = x * c - y * s if vertical else y * c + x * s
    idx = (key - key.min()).astype(np.int32)
    hist = np.bincount(idx).astype(np.float64)
    return float(len(hist) * np.dot(hist, hist) / (len(xy) ** 2))


# --- scan sheet -----------------------------------------------------------------------------
def _find_scan_sheet(grey: PageImage, paper: float) -> Points | None:
    """Outline of the sheet when dark scanner lid or edge bands show along a side, else None."""
    h, w = grey.shape
    band = 3
    dark_thr = paper - 60.0
    strips = (grey[:band], grey[-band:], grey[:, :band], grey[:, -band:])
    if not any(np.count_nonzero(strip < dark_thr) >= 0.5 * strip.size for strip in strips):
        return None
    ring = np.concatenate([strip.ravel() for strip in strips])
    dark = ring[ring < dark_thr]
    thr = paper - max(40.0, 0.25 * (paper - float(np.median(dark))))
    _, mask = cv2.threshold(grey, thr, 255, cv2.THRESH_BINARY)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    found, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not found:
        return None
    hull = cv2.convexHull(max(found, key=cv2.contourArea))
    if cv2.contourArea(hull) < 0.3 * h * w:
        return None
    filled = np.zeros_like(grey)
    cv2.fillPoly(filled, [hull], 255)
    filled = cv2.erode(filled, np.ones((5, 5), np.uint8))  # stay clear of the sheet's shadowed edge
    inner, _ = cv2.findContours(filled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not inner:
        return None
    outline: Points = cv2.convexHull(max(inner, key=cv2.contourArea)).reshape(-1, 2).astype(np.float32)
    return outline


# --- small helpers ----------------------------------------------------------------------------
def _normalise(image: PageImage) -> PageImage:
    arr = np.asarray(image)
    if arr.size == 0 or arr.ndim not in (2, 3):
        raise NotAnImage(f"image array has shape {arr.shape}")
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        raise NotAnImage(f"image array has dtype {arr.dtype}")
    if arr.ndim == 3:
        if arr.shape[2] == 1:
            arr = arr[:, :, 0]
        elif arr.shape[2] == 4:
            arr = arr[:, :, :3]
        elif arr.shape[2] != 3:
            raise NotAnImage(f"image array has shape {arr.shape}")
    result: PageImage = np.ascontiguousarray(arr)
    return result


def _shrink(image: PageImage, k: int) -> PageImage:
    """Downscale by the integer factor ``k`` (area average; OpenCV's fast path), dropping the remainder."""
    if k <= 1:
        return image
    h, w = image.shape[:2]
    sh, sw = max(1, h // k), max(1, w // k)
    src = image[: sh * k, : sw * k] if h >= k and w >= k else image
    small: PageImage = cv2.resize(src, (sw, sh), interpolation=cv2.INTER_AREA)
    return small


def _grey(image: PageImage) -> PageImage:
    if image.ndim == 2:
        return image
    grey: PageImage = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return grey


def _percentile(grey: PageImage, q: float) -> float:
    hist = cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel().cumsum()
    return float(np.searchsorted(hist, hist[-1] * q / 100.0))


def _ink_mask(grey: PageImage, paper: float) -> Mask:
    """Dark marks: Otsu's threshold, but never closer than 40 levels to the paper (noise, show-through)."""
    otsu, _ = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    thr = min(float(otsu), paper - 40.0)
    _, mask = cv2.threshold(grey, thr, 255, cv2.THRESH_BINARY_INV)
    result: Mask = mask
    return result


def _paper_colour(small: PageImage, grey: PageImage, paper: float) -> tuple[float, ...]:
    sel = cv2.compare(grey, paper - 12, cv2.CMP_GE)
    if small.ndim == 2 or cv2.countNonZero(sel) == 0:
        return (paper,) * (1 if small.ndim == 2 else 3)
    return tuple(float(v) for v in cv2.mean(small, mask=sel)[:3])


def _ink_corners(ink: Mask) -> Points | None:
    pts = cv2.findNonZero(ink)
    if pts is None:
        return None
    x, y, w, h = cv2.boundingRect(pts)
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float32)


def _affine(pts: Points, matrix: npt.NDArray[np.float64]) -> Points:
    moved: Points = (pts @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)
    return moved


def _bounds(pts: Points) -> tuple[float, float, float, float]:
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def _warp_affine(
    image: PageImage, matrix: npt.NDArray[np.float64], w: int, h: int, fill: tuple[float, ...]
) -> PageImage:
    out: PageImage = cv2.warpAffine(
        image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill
    )
    return out


def _crop_or_pad(image: PageImage, x0: int, y0: int, w: int, h: int, fill: tuple[float, ...]) -> PageImage:
    ih, iw = image.shape[:2]
    if x0 >= 0 and y0 >= 0 and x0 + w <= iw and y0 + h <= ih:
        return image[y0 : y0 + h, x0 : x0 + w].copy()
    out = np.empty((h, w, *image.shape[2:]), dtype=np.uint8)
    out[...] = np.array(fill, dtype=np.float64).round().astype(np.uint8) if image.ndim == 3 else round(fill[0])
    sx0, sy0 = max(0, x0), max(0, y0)
    sx1, sy1 = min(iw, x0 + w), min(ih, y0 + h)
    out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def _paint_outside(image: PageImage, outline: Points, fill: tuple[float, ...]) -> PageImage:
    inside = np.zeros(image.shape[:2], dtype=np.uint8)
    cv2.fillPoly(inside, [np.round(outline).astype(np.int32)], 255)
    outside = inside == 0
    if image.ndim == 3:
        image[outside] = np.array(fill).round().astype(np.uint8)
    else:
        image[outside] = round(fill[0])
    return image
