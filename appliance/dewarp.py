"""Page curl correction: bent text lines of a rectified photo made straight again.

``straighten(image, small, dpi) -> Straightened`` is a pure step (OpenCV + numpy). The imaging path
calls it once, on a camera photo that was found curled, after the perspective rectification and
before the page is binarised and read.

The method follows the text lines themselves:

1. On the analysis copy (about 100 dpi) the dark, uncoloured ink is smeared along the rows, so the
   letters of a line join into bands; each band that is thin and long enough is a text line (seals,
   signatures, table frames and merged lines are left out).
2. Each line gives the height of its centre every few millimetres.
3. One smooth field of vertical displacement is fitted to all lines at once: the nodes of a coarse
   grid over the page (bilinear between them, held smooth by second differences, so it reaches
   between lines and out to the margins) and one height per line, such that every line becomes
   horizontal. The page's vertical centre line stays where it is.
4. The analysis copy is remapped and its lines measured again. The correction is kept only when
   the lines came out clearly straighter; then the full-resolution page is remapped (in bands of
   rows, to keep memory small). Otherwise the page comes back as it was.

Straightness ("bend") is the spread of a line's centre around its own straight fit, in millimetres,
averaged over the most bent third of the lines: flat pages measure about 0.1 mm.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any

import cv2 as _cv2
import numpy as np
import numpy.typing as npt

from appliance.model import PageImage

log = logging.getLogger(__name__)

cv2: Any = _cv2  # OpenCV's stubs type every array as MatLike

MM_PER_INCH = 25.4
STRAIGHT_MM = 0.25  # bend at or below which lines count as straight (flat pages: ~0.1 mm)
KEEP_RATIO = 0.7  # the corrected page is kept only when its bend is below this share of the original's
MIN_LINES = 6  # fewer usable text lines: too little to follow, the page is left as it is
SAMPLE_MM = 4.0  # one centre height per this much of a line
GRID = (13, 9)  # rows, columns of the displacement grid's nodes (odd columns: one on the centre line)
SMOOTH = 0.1  # weight of the field's second differences against one sample's misfit
BAND_ROWS = 256  # rows remapped at a time on the full-resolution page

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Straightened:
    """The page after the curl correction, or the same objects when it was not kept."""

    image: PageImage
    small: PageImage
    applied: bool  # the remapped page was kept
    straight: bool  # enough lines, and they are straight now (bend at most STRAIGHT_MM), corrected or not
    bend_before_mm: float
    bend_after_mm: float
    lines: int  # text lines the field was fitted to


@dataclass(frozen=True, slots=True)
class _Line:
    x: FloatArray  # sample positions (analysis pixels)
    y: FloatArray  # the line's centre height at each
    w: FloatArray  # weight of each sample (its ink)


def straighten(image: PageImage, small: PageImage, dpi: float, *, vertical: bool = False) -> Straightened:
    """Straighten bent text lines of ``image`` (full resolution, ``dpi``) using its analysis copy ``small``.

    ``small`` is ``image`` downscaled (about 100 dpi); ``vertical`` says the text lines run up and down
    (a page lying on its side). Returns the corrected page and analysis copy when the lines came out
    straighter, else the inputs unchanged, with the measured bend before and after.
    """
    if vertical:  # work on the transposed page: its lines run across
        out = straighten(_transpose(image), _transpose(small), dpi)
        if not out.applied:
            return replace(out, image=image, small=small)
        return replace(out, image=_transpose(out.image), small=_transpose(out.small))
    px_mm = small.shape[1] / image.shape[1] * dpi / MM_PER_INCH
    lines = text_lines(small, px_mm)
    before = bend_mm(lines, px_mm)
    enough = len(lines) >= MIN_LINES
    unchanged = Straightened(image, small, False, enough and before <= STRAIGHT_MM, before, before, len(lines))
    if not enough or before <= STRAIGHT_MM:
        log.debug("dewarp: %d lines, bend %.2f mm: left as it is", len(lines), before)
        return unchanged
    field = _fit_field(lines, small.shape[1], small.shape[0])
    if field is None:
        log.info("dewarp: no displacement field fits %d lines: page kept as it was", len(lines))
        return unchanged
    small_out = _remap(small, field, 1.0)
    after = bend_mm(text_lines(small_out, px_mm), px_mm)
    if not after < KEEP_RATIO * before:
        log.info("dewarp: bend %.2f -> %.2f mm over %d lines: not straighter, page kept as it was", before, after,
                 len(lines))  # fmt: skip
        return replace(unchanged, bend_after_mm=after)
    scale = image.shape[0] / small.shape[0]
    out_image = _remap(image, field, scale)
    log.info("dewarp: bend %.2f -> %.2f mm over %d lines: corrected", before, after, len(lines))
    return Straightened(out_image, small_out, True, after <= STRAIGHT_MM, before, after, len(lines))


# --- text lines ------------------------------------------------------------------------------
def text_lines(small: PageImage, px_mm: float) -> list[_Line]:
    """The page's text lines as centre heights every SAMPLE_MM, from dark, uncoloured ink."""
    ink = _ink(small)
    reach = max(3, round(3.0 * px_mm))  # joins letters and words, not columns
    bands = cv2.morphologyEx(ink, cv2.MORPH_CLOSE, np.ones((1, reach), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(bands, connectivity=8)
    width = stats[:, cv2.CC_STAT_WIDTH].astype(np.float64)
    thick = stats[:, cv2.CC_STAT_AREA] / np.maximum(width, 1.0)
    keep = (width >= 15.0 * px_mm) & (thick >= 0.6 * px_mm) & (thick <= 5.0 * px_mm)
    keep[0] = False
    if np.count_nonzero(keep) == 0:
        return []
    keep &= thick <= 1.7 * float(np.median(thick[keep]))  # two lines run together
    ids = np.flatnonzero(keep)
    if len(ids) == 0:
        return []
    index = np.full(count, -1, np.int64)
    index[ids] = np.arange(len(ids))

    # Per (line, column bin): the ink's mean height and its spread.
    ys, xs = np.nonzero(ink)
    line = index[labels[ys, xs]]
    on = line >= 0
    ys, xs, line = ys[on].astype(np.float64), xs[on], line[on]
    step = max(2, round(SAMPLE_MM * px_mm))
    bins = small.shape[1] // step + 1
    key = line * bins + xs // step
    size = len(ids) * bins
    n = np.bincount(key, minlength=size).astype(np.float64)
    sy = np.bincount(key, weights=ys, minlength=size)
    syy = np.bincount(key, weights=ys * ys, minlength=size)
    sx = np.bincount(key, weights=xs.astype(np.float64), minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        my, mx = sy / n, sx / n
        spread = np.sqrt(np.maximum(syy / n - my * my, 0.0))
    good = (n >= 0.15 * step * px_mm) & (spread <= 1.6 * px_mm)  # enough ink; not a frame's two edges
    lines = []
    for i in range(len(ids)):
        sel = slice(i * bins, (i + 1) * bins)
        g = good[sel]
        if np.count_nonzero(g) >= 4:
            lines.append(_Line(mx[sel][g], my[sel][g], np.sqrt(n[sel][g])))
    return lines


def _ink(small: PageImage) -> npt.NDArray[np.uint8]:
    """Dark marks without colour (a seal or signature is not a text line)."""
    if small.ndim == 3:
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        chroma = cv2.subtract(
            cv2.max(cv2.max(small[..., 0], small[..., 1]), small[..., 2]),
            cv2.min(cv2.min(small[..., 0], small[..., 1]), small[..., 2]),
        )
    else:
        grey, chroma = small, None
    hist = cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel().cumsum()
    paper = float(np.searchsorted(hist, hist[-1] * 0.9))
    otsu, _ = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    _, ink = cv2.threshold(grey, min(float(otsu), paper - 40.0), 255, cv2.THRESH_BINARY_INV)
    if chroma is not None:
        ink[chroma >= 60] = 0
    result: npt.NDArray[np.uint8] = ink
    return result


def bend_mm(lines: list[_Line], px_mm: float) -> float:
    """How far the lines' centres stray from straight (mm): RMS about each line's straight fit,
    averaged over the most bent third of the lines (a curl bends the lines near one edge only)."""
    spreads = []
    for ln in lines:
        if np.ptp(ln.x) < 20.0 * px_mm or len(ln.x) < 5:
            continue
        degree = 3 if len(ln.x) >= 8 else 2
        curve = np.polyval(np.polyfit(ln.x, ln.y, degree, w=ln.w), ln.x)  # the line's shape, noise averaged out
        resid = curve - np.polyval(np.polyfit(ln.x, ln.y, 1, w=ln.w), ln.x)
        spreads.append(math.sqrt(float(np.average(resid**2, weights=ln.w))) / px_mm)
    if not spreads:
        return 0.0
    top = np.sort(spreads)[-max(1, len(spreads) // 3) :]
    return float(np.mean(top))


# --- the displacement field ------------------------------------------------------------------
def _fit_field(lines: list[_Line], width: int, height: int) -> FloatArray | None:
    """Vertical displacement (analysis pixels) at the GRID nodes that makes every line horizontal.

    Unknowns: the nodes (the centre column held at 0) and one output height per line. A sample at
    (x, y) of line i asks ``b_i + D(x, b_i) = y``; D is bilinear between the nodes. Solved twice: the
    first pass evaluates D at the sample's own height, the second at the line's fitted height.
    None when the equations have no single solution.
    """
    rows, cols = GRID
    centre = cols // 2
    free = [(r, c) for r in range(rows) for c in range(cols) if c != centre]
    col_of = {rc: j for j, rc in enumerate(free)}
    column = np.full((rows, cols), -1, np.int64)  # node -> its unknown's column (-1: held at 0)
    for (r, c), j in col_of.items():
        column[r, c] = j
    n_nodes, n_lines = len(free), len(lines)
    x = np.concatenate([ln.x for ln in lines])
    y = np.concatenate([ln.y for ln in lines])
    w = np.concatenate([ln.w for ln in lines])
    owner = np.concatenate([np.full(len(ln.x), i) for i, ln in enumerate(lines)])
    w = w / np.mean(w)

    reg = []  # second differences along both directions and the mixed one
    for r in range(rows):
        for c in range(cols):
            for dr, dc in ((0, 1), (1, 0)):
                if r + 2 * dr < rows and c + 2 * dc < cols:
                    reg.append([((r, c), 1.0), ((r + dr, c + dc), -2.0), ((r + 2 * dr, c + 2 * dc), 1.0)])
            if r + 1 < rows and c + 1 < cols:
                reg.append([((r, c), 1.0), ((r, c + 1), -1.0), ((r + 1, c), -1.0), ((r + 1, c + 1), 1.0)])
    r_mat = np.zeros((len(reg), n_nodes + n_lines))
    for k, terms in enumerate(reg):
        for rc, factor in terms:
            if rc in col_of:
                r_mat[k, col_of[rc]] = factor * SMOOTH * math.sqrt(len(x) / n_nodes)

    at: FloatArray = y
    nodes = np.zeros((rows, cols))
    for _ in range(2):
        a = np.zeros((len(x), n_nodes + n_lines))
        u: FloatArray = np.clip(x / max(width - 1, 1), 0, 1) * (cols - 1)
        v: FloatArray = np.clip(at / max(height - 1, 1), 0, 1) * (rows - 1)
        c0 = np.minimum(u.astype(np.int64), cols - 2)
        r0 = np.minimum(v.astype(np.int64), rows - 2)
        fu, fv = u - c0, v - r0
        for dr, dc, wt in ((0, 0, (1 - fv) * (1 - fu)), (0, 1, (1 - fv) * fu), (1, 0, fv * (1 - fu)), (1, 1, fv * fu)):
            j = column[r0 + dr, c0 + dc]
            on = j >= 0
            a[np.flatnonzero(on), j[on]] += wt[on]
        a[np.arange(len(x)), n_nodes + owner] = 1.0
        lhs = np.vstack([a * w[:, None], r_mat])
        rhs = np.concatenate([y * w, np.zeros(len(reg))])
        # OpenCV's own products and Cholesky: numpy's threaded BLAS spins for ~0.2 s a call on a busy CPU.
        normal = cv2.mulTransposed(lhs, True)
        normal[np.diag_indices_from(normal)] += 1e-6  # a node no sample or neighbour reaches stays defined
        ok, sol = cv2.solve(normal, cv2.gemm(lhs, rhs.reshape(-1, 1), 1.0, None, 0.0, flags=cv2.GEMM_1_T),
                            flags=cv2.DECOMP_CHOLESKY)  # fmt: skip
        if not ok:
            return None
        sol = sol.ravel()
        for (r, c), j in col_of.items():
            nodes[r, c] = sol[j]
        at = sol[n_nodes + owner]  # each sample's line, where it will lie
    return nodes


def _remap(image: PageImage, nodes: FloatArray, scale: float) -> PageImage:
    """``image`` with each pixel taken from ``scale * D`` lower; D bilinear between the nodes, which span
    the page (``scale``: image pixels per analysis pixel)."""
    h, w = image.shape[:2]
    rows, cols = nodes.shape
    # Hat weights of the grid columns for every image column, and of the grid rows for every image row.
    xw = _hats(w, cols)  # (cols, w)
    yw = _hats(h, rows)  # (rows, h)
    per_row = (yw.T @ nodes * scale).astype(np.float32)  # (h, cols)
    xw32 = xw.astype(np.float32)
    map_x = np.tile(np.arange(w, dtype=np.float32), (min(BAND_ROWS, h), 1))
    out: PageImage = np.empty_like(image)
    for y0 in range(0, h, BAND_ROWS):
        y1 = min(h, y0 + BAND_ROWS)
        map_y = cv2.gemm(per_row[y0:y1], xw32, 1.0, None, 0.0) + np.arange(y0, y1, dtype=np.float32)[:, None]
        out[y0:y1] = cv2.remap(
            image, map_x[: y1 - y0], map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        ).reshape(out[y0:y1].shape)
    return out


def _hats(n: int, nodes: int) -> FloatArray:
    """(nodes, n): the linear-interpolation weight of each node at each of n positions spanning it."""
    t = np.arange(n, dtype=np.float64) / max(n - 1, 1) * (nodes - 1)
    return np.maximum(0.0, 1.0 - np.abs(t[None, :] - np.arange(nodes, dtype=np.float64)[:, None]))


def _transpose(image: PageImage) -> PageImage:
    out: PageImage = np.ascontiguousarray(np.swapaxes(image, 0, 1))
    return out
