"""Compact page encoding: CleanPage -> EncodedPage (pure, no subprocess).

Two encodings, chosen per page (never per document):

* ``Encoding.MRC`` (ordinary pages): a full-resolution *lossless* bilevel mask of the dark,
  unsaturated ink (CCITT Group 4, painted black as a stencil) over a low-resolution JPEG
  background from which the text has been removed. Coloured ink -- red seals, blue
  signatures, coloured stamps -- is deliberately kept out of the mask, so it stays in colour
  in the background layer.
* ``Encoding.JPEG`` (pages dominated by continuous tone, e.g. photos): one JPEG at
  ``opts.min_dpi`` (200 dpi).

Resolution rule (digitized pages are >= 200 dpi): a page captured below ``opts.min_dpi`` is
interpolated up to ``opts.min_dpi`` for its full-resolution layer (the mask is thresholded
*after* interpolation, so edges are smooth rather than blocky). ``EncodedPage.dpi`` is the
resolution of the layer actually stored, and ``EncodedPage.upsampled_from`` records the
capture resolution, so the interpolation is never silent.
"""

from __future__ import annotations

import io
import logging
import math
import struct
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, TiffImagePlugin

from appliance.model import CleanPage, EncodedPage, EncodeOptions, Encoding, ImageLayer, PageImage

log = logging.getLogger(__name__)

# Imported for its side effect, TIFF registered as a save format: otherwise PIL's first TIFF save (the
# G4 mask) imports every image plugin, ~25 ms of a one-page run.
_TIFF_WRITER = TiffImagePlugin.TiffImageFile.format

Mask = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float32]

# Quality of the single JPEG of a photo-dominated page (the MRC background uses opts.jpeg_quality).
PHOTO_QUALITY = 60
# A page is "photo-dominated" when this share of its area is continuous tone (not paper, not text).
PHOTO_SHARE = 0.30
# Chroma (max - min channel, 0..255) above which ink counts as coloured and stays out of the mask.
INK_CHROMA = 40
# Share of the background (text removed) that must be coloured for a colour background.
COLOUR_SHARE = 0.0005
# Ink threshold relative to the local paper level: clamp of the Otsu estimate.
INK_RATIO_MIN = 0.45
INK_RATIO_MAX = 0.75
# Speckles: components up to this area (pixels at 300 dpi) are noise unless close to real ink.
SPECK_AREA_300 = 12
# ... "close" means within this distance (mm): diacritics sit well inside it.
SPECK_NEAR_MM = 1.5
# Full-resolution work is done in bands of this many rows, so its temporaries stay a few MB whatever the
# page size (an A4 page at 300 dpi is 26 MB in RGB; whole-page temporaries added ~90 MB per step).
BAND_ROWS = 256


def encode(page: CleanPage, opts: EncodeOptions = EncodeOptions()) -> EncodedPage:  # noqa: B008 (frozen)
    """Encode one clean page for the PDF: MRC for ordinary pages, JPEG for photo pages."""
    img = _check(page.image)
    if page.dpi <= 0:
        raise ValueError(f"page dpi must be positive, got {page.dpi}")
    h, w = img.shape[:2]
    width_pt = w * 72.0 / page.dpi
    height_pt = h * 72.0 / page.dpi
    rgb = img.ndim == 3
    grey = _u8img(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)) if rgb else img

    full_dpi = max(page.dpi, opts.min_dpi)
    upsampled = page.dpi < opts.min_dpi - 0.5
    if upsampled:
        log.warning(
            "page captured at %.0f dpi (< %.0f): full-resolution layer interpolated to %.0f dpi",
            page.dpi,
            opts.min_dpi,
            full_dpi,
        )

    paper = _paper_level(grey, page.dpi)
    ink = _ink_mask(img, grey, paper, scale=full_dpi / page.dpi)
    del grey, paper  # an RGB page's grey copy is not needed past the mask: free it before the peak below
    ink = _despeckle(ink, full_dpi)
    ink_src = ink if not upsampled else cv2.resize(_u8(ink), (w, h), interpolation=cv2.INTER_AREA) > 127

    background, _holes = _background(img, ink_src, page.dpi, opts.background_dpi)
    colour = rgb and (page.colour or _has_colour(background))
    if rgb and not colour:
        background = _u8img(cv2.cvtColor(background, cv2.COLOR_RGB2GRAY))

    share = _tone_share(background)
    if share >= PHOTO_SHARE:
        log.info("page is photo-dominated (%.0f%% continuous tone): single JPEG", share * 100)
        return _encode_photo(img, page.dpi, colour, opts, width_pt, height_pt)

    mh, mw = ink.shape
    mask = ImageLayer(data=g4_bytes(ink), width=mw, height=mh, filter="CCITTFaxDecode", colour=False)
    bg = ImageLayer(
        data=jpeg_bytes(background, opts.jpeg_quality),
        width=background.shape[1],
        height=background.shape[0],
        filter="DCTDecode",
        colour=colour,
    )
    return EncodedPage(
        encoding=Encoding.MRC,
        width_pt=width_pt,
        height_pt=height_pt,
        dpi=round(mw * 72.0 / width_pt, 2),
        background=bg,
        mask=mask,
        upsampled_from=page.dpi if upsampled else None,
    )


# --- layers ---------------------------------------------------------------------------------


def g4_bytes(mask: Mask) -> bytes:
    """Raw CCITT Group 4 (K=-1) data of a bilevel image; True (ink) is coded as black runs.

    In a PDF: /Filter /CCITTFaxDecode /DecodeParms << /K -1 /Columns W /Rows H >> with the
    default /BlackIs1 false, so ink decodes to sample 0, which an /ImageMask (default /Decode
    [0 1]) paints.
    """
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError("mask must be a non-empty 2-D array")
    h, w = mask.shape
    buf = io.BytesIO()
    # One strip for the whole image: the strip bytes are then exactly one G4 stream.
    Image.fromarray(mask).save(buf, "TIFF", compression="group4", tiffinfo={278: h})
    return _tiff_strip(buf.getvalue())


def jpeg_bytes(image: PageImage, quality: int, full_chroma: bool = True) -> bytes:
    """Baseline JPEG (JFIF) of a grey or RGB image, with optimised Huffman tables.

    ``full_chroma`` keeps colour at full resolution (4:4:4): on a 100 dpi background, 4:2:0
    would halve it again and wash thin blue signature strokes and seal lettering out to grey.

    Encoded by OpenCV, not Pillow: with optimised tables libjpeg writes the whole stream at the
    end and cannot suspend, so Pillow must guess an output buffer up front (one byte per pixel
    below quality 95). A noisy 4:4:4 colour page needs more, and Pillow then fails with "broken
    data stream" (Pillow issue #148). OpenCV's destination grows as needed; both use
    libjpeg-turbo and write the same bytes for the same settings.
    """
    if image.ndim == 3:
        image = _u8img(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))  # OpenCV's channel order
    sampling = cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444 if full_chroma else cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420
    params = [
        cv2.IMWRITE_JPEG_QUALITY,
        quality,
        cv2.IMWRITE_JPEG_OPTIMIZE,
        1,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        sampling,
    ]
    ok, data = cv2.imencode(".jpg", image, params)
    if not ok:
        raise ValueError(f"JPEG encoding failed for a {image.shape} image at quality {quality}")
    return data.tobytes()


def _tiff_strip(tiff: bytes) -> bytes:
    """The single strip of a one-page TIFF, found through its tag directory."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or struct.unpack(order + "H", tiff[2:4])[0] != 42:
        raise ValueError("not a classic TIFF")
    (ifd,) = struct.unpack(order + "I", tiff[4:8])
    (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
    tags: dict[int, list[int]] = {}
    for i in range(count):
        entry = tiff[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
        tag, typ, n = struct.unpack(order + "HHI", entry[:8])
        fmt = {3: "H", 4: "I"}.get(typ)
        if fmt is None:
            continue
        size = struct.calcsize(fmt) * n
        if size <= 4:
            raw = entry[8 : 8 + size]
        else:
            (off,) = struct.unpack(order + "I", entry[8:12])
            raw = tiff[off : off + size]
        tags[tag] = list(struct.unpack(order + fmt * n, raw))
    offsets, counts = tags.get(273, []), tags.get(279, [])
    if len(offsets) != 1 or len(counts) != 1 or tags.get(259) != [4]:
        raise ValueError("expected one Group 4 strip")
    return tiff[offsets[0] : offsets[0] + counts[0]]


def _encode_photo(
    img: PageImage, dpi: float, colour: bool, opts: EncodeOptions, width_pt: float, height_pt: float
) -> EncodedPage:
    h, w = img.shape[:2]
    target = opts.min_dpi
    out = img
    if abs(target - dpi) > 0.5:
        size = _scaled(w, h, target / dpi, up=True)
        interp = cv2.INTER_AREA if target < dpi else cv2.INTER_LINEAR
        out = _u8img(cv2.resize(img, size, interpolation=interp))
    if out.ndim == 3 and not colour:
        out = _u8img(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY))
    layer = ImageLayer(
        data=jpeg_bytes(out, PHOTO_QUALITY, full_chroma=False),
        width=out.shape[1],
        height=out.shape[0],
        filter="DCTDecode",
        colour=out.ndim == 3,
    )
    return EncodedPage(
        encoding=Encoding.JPEG,
        width_pt=width_pt,
        height_pt=height_pt,
        dpi=round(out.shape[1] * 72.0 / width_pt, 2),
        background=layer,
        mask=None,
        upsampled_from=dpi if dpi < opts.min_dpi - 0.5 else None,
    )


# --- analysis -------------------------------------------------------------------------------


def _paper_level(grey: PageImage, dpi: float) -> PageImage:
    """Local paper brightness at a low resolution (~ 1/8 of the page's), text removed.

    A max filter wider than a text line removes the ink; a blur smooths the estimate.
    The result follows uneven lighting, so shading does not become black blobs.
    """
    h, w = grey.shape
    f = 8
    small = cv2.resize(grey, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    k = max(3, int(round(dpi / f * 4.0 / 25.4)) | 1)  # ~ 4 mm
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    paper = cv2.dilate(small, kernel)
    return _u8img(cv2.blur(paper, (k, k)))


def _ink_mask(img: PageImage, grey: PageImage, paper: PageImage, scale: float) -> Mask:
    """Dark, unsaturated ink at the full-resolution layer's size (``scale`` x the page's)."""
    h, w = grey.shape
    if scale > 1.0:
        size = _scaled(w, h, scale, up=True)
        img = _u8img(cv2.resize(img, size, interpolation=cv2.INTER_LINEAR))
        grey = _u8img(cv2.resize(grey, size, interpolation=cv2.INTER_LINEAR))
        h, w = grey.shape
    ratio = _ink_ratio(grey, paper)
    threshold = np.clip(paper.astype(np.float32) * ratio, 0, 255).astype(np.uint8)
    threshold = cv2.resize(threshold, (w, h), interpolation=cv2.INTER_LINEAR)
    ink: Mask = np.empty((h, w), np.bool_)
    for y0 in range(0, h, BAND_ROWS):  # pixel by pixel: the bands give exactly the whole-page result
        y1 = min(h, y0 + BAND_ROWS)
        dark = cv2.compare(grey[y0:y1], threshold[y0:y1], cv2.CMP_LT)
        if img.ndim == 3:
            dark = cv2.bitwise_and(dark, _unsaturated(img[y0:y1]))
        np.greater(dark, 0, out=ink[y0:y1])
    return ink


def _unsaturated(rgb: PageImage) -> PageImage:
    """255 where a pixel is not coloured: chroma at most INK_CHROMA or 30 % of its brightest channel."""
    r, g, b = cv2.split(rgb)
    hi = cv2.max(cv2.max(r, g), b)
    lo = cv2.min(cv2.min(r, g), b)
    chroma = cv2.subtract(hi, lo)
    limit = cv2.max(cv2.multiply(hi, np.full_like(hi, 3), scale=0.1), np.full_like(hi, INK_CHROMA))
    return _u8img(cv2.compare(chroma, limit, cv2.CMP_LE))


def _ink_ratio(grey: PageImage, paper: PageImage) -> float:
    """Otsu threshold of grey / paper on a subsample, clamped to a sane band."""
    sub = grey[::4, ::4]
    ref = cv2.resize(paper, (sub.shape[1], sub.shape[0]), interpolation=cv2.INTER_LINEAR)
    norm = cv2.divide(sub, ref, scale=200.0)  # paper ~ 200, saturates at 255
    t, _ = cv2.threshold(norm, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(np.clip(t / 200.0, INK_RATIO_MIN, INK_RATIO_MAX))


def _despeckle(ink: Mask, dpi: float) -> Mask:
    """Drop tiny isolated components; keep small ones near real ink (diacritics, dots)."""
    n, labels, stats, centroids = _components(ink)
    if n <= 1:
        return ink
    areas = stats[:, cv2.CC_STAT_AREA]
    speck_area = max(2, int(round(SPECK_AREA_300 * (dpi / 300.0) ** 2)))
    tiny = np.flatnonzero(areas[1:] <= speck_area) + 1
    if tiny.size == 0:
        return ink
    # "Real ink nearby" on a 1/4-resolution map: the boxes of the larger components, or the
    # pixels themselves for a sparse, large one (a frame or a table grid would cover everything).
    f = 4
    h, w = ink.shape
    near = np.zeros((h // f + 1, w // f + 1), np.uint8)
    for i in np.flatnonzero(areas[1:] > speck_area) + 1:
        x, y, bw, bh, area = (int(v) for v in stats[i])
        if bw * bh > 400 * f * f and area * 5 < bw * bh:
            roi = labels[y : y + bh, x : x + bw] == i
            hits = roi[::f, ::f].copy()
            offset = roi[f // 2 :: f, f // 2 :: f]  # a second sampling grid, so thin strokes are seen
            hits[: offset.shape[0], : offset.shape[1]] |= offset
            ys, xs = np.nonzero(hits)
            near[(ys * f + y) // f, (xs * f + x) // f] = 255
        else:
            near[y // f : (y + bh - 1) // f + 1, x // f : (x + bw - 1) // f + 1] = 255
    r = max(1, int(math.ceil(SPECK_NEAR_MM / 25.4 * dpi / f)))
    near = cv2.dilate(near, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 1, 2 * r + 1)))
    cx = np.clip((centroids[tiny, 0] / f).astype(np.intp), 0, near.shape[1] - 1)
    cy = np.clip((centroids[tiny, 1] / f).astype(np.intp), 0, near.shape[0] - 1)
    drop = tiny[near[cy, cx] == 0]
    if drop.size == 0:
        return ink
    log.debug("despeckle: %d of %d components dropped", drop.size, n - 1)
    if drop.size > 2000:  # a very noisy page: one pass over the whole label image
        lut = np.ones(n, dtype=np.bool_)
        lut[0] = False
        lut[drop] = False
        result: Mask = lut[labels]
        return result
    out = ink.copy()
    for i in drop:
        x, y, bw, bh = (int(v) for v in stats[i, :4])
        box = out[y : y + bh, x : x + bw]
        box[labels[y : y + bh, x : x + bw] == i] = False
    return out


def _components(
    ink: Mask,
) -> tuple[int, npt.NDArray[np.integer[Any]], npt.NDArray[np.int32], npt.NDArray[np.float64]]:
    """8-connected components with stats. Labels in 16 bits (half the memory of OpenCV's default 32) while
    they fit, as on any text page; a very noisy page with 65,535 specks or more is labelled again in 32."""
    try:
        out = cv2.connectedComponentsWithStatsWithAlgorithm(ink.view(np.uint8), 8, cv2.CV_16U, cv2.CCL_DEFAULT)
    except cv2.error:
        out = cv2.connectedComponentsWithStats(ink.view(np.uint8), connectivity=8)
    n, labels, stats, centroids = out
    return (
        int(n),
        cast(npt.NDArray[np.integer[Any]], labels),
        cast(npt.NDArray[np.int32], stats),
        cast(npt.NDArray[np.float64], centroids),
    )


def _background(img: PageImage, ink: Mask, dpi: float, background_dpi: float) -> tuple[PageImage, Mask]:
    """Low-resolution image with the ink removed (filled with the surrounding colour).

    Mask-aware averaging: the masked (and slightly dilated) pixels get zero weight when the page
    is area-averaged down to ``background_dpi``; cells with too little paper left are filled by
    normalised convolution from their neighbours. Returns the image and the cells that were filled.
    """
    r = max(1, int(round(dpi / 150.0)))
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 1, 2 * r + 1))
    h, w = ink.shape
    factor = dpi / background_dpi
    whole = round(factor)
    if whole >= 2 and abs(factor - whole) < 0.15 and min(h, w) >= whole:
        # Exact integer reduction (OpenCV's fast path). The last < `whole` rows/columns are
        # dropped: the layer is stretched over the page by at most that, invisible at this dpi.
        # Each output row averages `whole` input rows, so bands of whole rows give the same result;
        # each band's dilation reads `r` rows beyond it, so it too is the whole page's.
        hc, wc = (h // whole) * whole, (w // whole) * whole
        size = (wc // whole, hc // whole)
        reduced = np.empty((size[1], size[0], *img.shape[2:]), np.uint8)
        weight8 = np.empty((size[1], size[0]), np.uint8)
        step = max(1, BAND_ROWS // whole) * whole
        for y0 in range(0, hc, step):
            y1 = min(hc, y0 + step)
            lo, hi = max(0, y0 - r), min(h, y1 + r)
            near = cv2.dilate(ink[lo:hi].view(np.uint8), kernel)[y0 - lo : y1 - lo, :wc]
            keep = cv2.threshold(near, 0, 255, cv2.THRESH_BINARY_INV)[1]  # 255 = paper, averaged
            band = img[y0:y1, :wc]
            rows = (size[0], (y1 - y0) // whole)
            out_rows = slice(y0 // whole, y1 // whole)
            kept = cv2.bitwise_and(band, band, mask=keep)
            reduced[out_rows] = cv2.resize(kept, rows, interpolation=cv2.INTER_AREA).reshape(reduced[out_rows].shape)
            weight8[out_rows] = cv2.resize(keep, rows, interpolation=cv2.INTER_AREA).reshape(weight8[out_rows].shape)
    else:
        size = _scaled(w, h, 1.0 / factor)
        keep = cv2.threshold(cv2.dilate(ink.view(np.uint8), kernel), 0, 255, cv2.THRESH_BINARY_INV)[1]
        kept = cv2.bitwise_and(img, img, mask=keep)
        reduced = _u8img(cv2.resize(kept, size, interpolation=cv2.INTER_AREA))
        weight8 = _u8img(cv2.resize(keep, size, interpolation=cv2.INTER_AREA))
        del kept, keep
    return _fill_holes(reduced, weight8)


def _fill_holes(reduced: PageImage, weight8: PageImage) -> tuple[PageImage, Mask]:
    """Divide the paper sums by their weight; fill the cells with too little paper from their neighbours.

    One channel at a time (which cells each pass fills depends on the weight alone): a float copy of an
    RGB background is 12 bytes a pixel, and the passes held four of them at once.
    """
    weight = weight8.astype(np.float32) * np.float32(1 / 255)
    holes = weight < 0.35
    safe = np.maximum(weight, 1e-3)
    passes: list[tuple[int, Mask, Floats]] = []
    todo = holes.copy()
    for k in (5, 15, 45):
        if not todo.any():
            break
        den = cv2.blur(weight, (k, k))
        ok = todo & (den > 0.02)
        passes.append((k, ok, cast(Floats, den[ok])))
        todo &= ~ok
    del weight
    planes = [reduced] if reduced.ndim == 2 else list(cv2.split(reduced))
    result: PageImage = np.empty(reduced.shape, np.uint8)
    for c, plane in enumerate(planes):
        total = plane.astype(np.float32)
        out = total / safe
        for k, ok, den_ok in passes:
            out[ok] = cv2.blur(total, (k, k))[ok] / den_ok
        if todo.any():  # cells far from any paper: use the page's paper colour
            paper_px = out[~holes]
            out[todo] = np.median(paper_px) if paper_px.size else 255.0
        out += 0.5
        np.clip(out, 0, 255, out=out)
        if reduced.ndim == 2:
            result[:] = out
        else:
            result[..., c] = out
    return result, holes


def _has_colour(background: PageImage) -> bool:
    if background.ndim != 3:
        return False
    hi = background.max(axis=2).astype(np.int16)
    lo = background.min(axis=2).astype(np.int16)
    chroma = hi - lo
    coloured = (chroma > INK_CHROMA) & (chroma * 10 > hi * 3)
    return bool(coloured.mean() > COLOUR_SHARE)


def _tone_share(background: PageImage) -> float:
    """Share of the page that is continuous tone: darker than the paper, once text is removed.

    The paper level is a smooth (quadratic) upper envelope fitted to the text-free background,
    so uneven lighting is not mistaken for a photo, while a large photo stays below it.
    """
    grey = cv2.cvtColor(background, cv2.COLOR_RGB2GRAY) if background.ndim == 3 else background
    coarse = cv2.resize(grey, (48, 64), interpolation=cv2.INTER_AREA).astype(np.float64)
    yy, xx = np.mgrid[0:64, 0:48]
    x, y = (xx.ravel() / 47.0 - 0.5), (yy.ravel() / 63.0 - 0.5)
    design = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    values = coarse.ravel()
    use = np.ones(values.shape, dtype=np.bool_)
    fit = np.full(values.shape, values.max())
    for _ in range(5):
        if use.sum() < 12:
            break
        coef, *_ = np.linalg.lstsq(design[use], values[use], rcond=None)
        fit = design @ coef
        use = values >= fit - 2.0  # climb to the upper envelope: the paper
    level = cv2.resize(fit.reshape(64, 48).astype(np.float32), (grey.shape[1], grey.shape[0]))
    if float(np.median(level)) < 16:
        return 1.0  # a (nearly) black page: treat as a photo, do not threshold it
    tone = grey.astype(np.float32) < 0.8 * level
    return float(tone.mean())


# --- helpers --------------------------------------------------------------------------------


def _check(image: PageImage) -> PageImage:
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or image.size == 0:
        raise ValueError("page image must be a non-empty uint8 grey (H, W) or RGB (H, W, 3) array")
    if image.ndim == 3 and image.shape[2] != 3:
        raise ValueError("colour page image must be RGB (H, W, 3)")
    return np.ascontiguousarray(image)


def _u8img(array: npt.NDArray[Any]) -> PageImage:
    """An OpenCV result typed as the uint8 image it is (no copy)."""
    if array.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {array.dtype}")
    return cast(PageImage, array)


def _u8(mask: Mask) -> PageImage:
    out: PageImage = mask.astype(np.uint8) * np.uint8(255)
    return out


def _scaled(w: int, h: int, factor: float, up: bool = False) -> tuple[int, int]:
    """Size scaled by `factor`: rounded, or rounded up (`up`) so the resolution never drops below."""
    if up:
        return max(1, math.ceil(w * factor - 1e-6)), max(1, math.ceil(h * factor - 1e-6))
    return max(1, int(round(w * factor))), max(1, int(round(h * factor)))
