"""The one seam to the tesseract program: page OCR (words + text-only PDF) and orientation detection.

Tesseract runs as a subprocess with ``OMP_THREAD_LIMIT=1``: OpenMP makes it several times slower on small
machines, and the pipeline parallelises across pages instead. One run per page writes both the TSV (words,
confidences, boxes) and the invisible-text PDF layer that the assembler overlays on the page image.

The OCR text never goes to the log; stderr of a failed run goes into the exception detail.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from appliance.errors import OcrFailed, OcrUnavailable
from appliance.model import CleanPage, OcrPage, PageImage, Word

log = logging.getLogger(__name__)

TESSERACT = "tesseract"

# OSD works on a downscaled grey copy; at 150 dpi it was right on 0/90/180/270 with 12 pt text, at 100 dpi
# it was not (measured, see tests/unit/test_ocr.py and the report).
OSD_DPI = 150.0
# Camera photos below this resolution are upsampled for tesseract (see `recognize`).
PHOTO_OCR_DPI = 300.0
_STDERR_MAX = 2000


@dataclass(frozen=True, slots=True)
class OcrOptions:
    lang: str = "vie"
    psm: int = 3  # tesseract page segmentation mode: 3 = fully automatic, no OSD
    timeout_s: float = 120.0
    low_conf: float = 70.0  # pages whose mean confidence is below this get PageFlag.LOW_CONFIDENCE


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_THREAD_LIMIT"] = "1"
    return env


def _grey(image: PageImage) -> PageImage:
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    if image.ndim == 3 and image.shape[2] == 1:
        return np.ascontiguousarray(image[:, :, 0])
    raise OcrFailed(f"unsupported image shape {image.shape}")


def _pgm(image: PageImage) -> bytes:
    """Binary PGM (P5): a header and the raw pixels -- no compression cost on either side."""
    grey = np.ascontiguousarray(_grey(image), dtype=np.uint8)
    h, w = grey.shape
    return b"P5\n%d %d\n255\n" % (w, h) + grey.tobytes()


def _write_pgm(path: Path, image: PageImage) -> None:
    """The PGM of :func:`_pgm`, written straight from the array: building it in memory took two more
    copies of the page (17 MB at A4 300 dpi) while the other worker's page was in its image work."""
    grey = np.ascontiguousarray(_grey(image), dtype=np.uint8)
    h, w = grey.shape
    with path.open("wb") as f:
        f.write(b"P5\n%d %d\n255\n" % (w, h))
        f.write(grey.data)  # contiguous: the raw pixels, no copy


def _tesseract_path() -> str:
    path = shutil.which(TESSERACT)
    if path is None:
        raise OcrUnavailable("tesseract is not installed (apt install tesseract-ocr tesseract-ocr-vie)")
    return path


_SETPRIV = shutil.which("setpriv")  # util-linux: the child dies with us (PR_SET_PDEATHSIG), no preexec_fn
TMP_PREFIX = "appliance-ocr-"
_swept = False


def _bound_to_us(args: list[str]) -> list[str]:
    """tesseract killed when this process dies, even by SIGKILL (no orphan left using the CPU)."""
    return [_SETPRIV, "--pdeathsig", "KILL", "--", *args] if _SETPRIV else args


def sweep_temp(root: Path | None = None) -> list[str]:
    """Remove the temporary folders of OCR runs whose process is gone (a kill -9 leaves them behind).

    Folder names carry the owner's pid: ``appliance-ocr-<pid>-<random>``."""
    removed = []
    for folder in (root or Path(tempfile.gettempdir())).glob(f"{TMP_PREFIX}*"):
        pid = folder.name.removeprefix(TMP_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or Path(f"/proc/{pid}").exists():
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    return removed


def _sweep_once() -> None:
    global _swept
    if not _swept:
        _swept = True
        sweep_temp()


def _run(args: list[str], *, timeout_s: float, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            _bound_to_us(args),
            input=stdin,
            capture_output=True,
            env=_env(),
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError as err:
        raise OcrUnavailable(f"cannot start tesseract: {err}") from err
    except subprocess.TimeoutExpired as err:
        raise OcrFailed(f"tesseract timed out after {timeout_s:.0f} s") from err
    except OSError as err:
        raise OcrFailed(f"cannot run tesseract: {err}") from err


def _stderr(data: bytes) -> str:
    """The end of what tesseract wrote on stderr, for an error's detail."""
    return data.decode("utf-8", "replace").strip()[-_STDERR_MAX:]


# --- recognition ---------------------------------------------------------------------------------------


def recognize(page: CleanPage, opts: OcrOptions = OcrOptions()) -> OcrPage:
    """OCR one clean page: words with confidences and boxes, the text, and a text-only PDF layer."""
    return start(page, opts).result()


class Recognition:
    """One tesseract run in flight (:func:`start`): :meth:`result` waits for it, :meth:`cancel` stops it.

    The pipeline starts one before it encodes the page, so that tesseract (one core) and the encoding
    (the other) run at the same time. Output goes to files in the run's temporary folder, never to a
    pipe nobody reads while the caller is busy."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        tmp: tempfile.TemporaryDirectory[str],
        *,
        shape: tuple[int, int],
        zoom: float,
        size: tuple[int, int],
        dpi: int,
        lang: str,
        deadline: float,
        timeout_s: float,
    ) -> None:
        self._proc, self._tmp = proc, tmp
        self._shape, self._zoom, self._size, self._dpi, self._lang = shape, zoom, size, dpi, lang
        self._deadline, self._timeout_s = deadline, timeout_s

    def cancel(self) -> None:
        """Stop the run (if it is still going) and remove its files; result() may not be called after."""
        with contextlib.suppress(OSError):
            self._proc.kill()
        self._proc.wait()
        self._tmp.cleanup()

    def result(self) -> OcrPage:
        try:
            return self._result()
        finally:
            self.cancel()

    def _result(self) -> OcrPage:
        tmp = Path(self._tmp.name)
        try:
            returncode = self._proc.wait(timeout=max(0.0, self._deadline - time.monotonic()))
        except subprocess.TimeoutExpired as err:
            raise OcrFailed(f"tesseract timed out after {self._timeout_s:.0f} s") from err
        detail = _stderr((tmp / "stderr").read_bytes())
        if returncode != 0:
            if "Failed loading language" in detail or "Could not initialize tesseract" in detail:
                raise OcrUnavailable(f"tesseract cannot load language {self._lang!r}: {detail}")
            raise OcrFailed(f"tesseract exited with {returncode}: {detail}")
        pdf_path, tsv_path = tmp / "out.pdf", tmp / "out.tsv"
        if not pdf_path.exists() or not tsv_path.exists():
            raise OcrFailed(f"tesseract wrote no output: {detail}")
        text_pdf = pdf_path.read_bytes()
        tsv = tsv_path.read_text(encoding="utf-8", errors="replace")
        if not text_pdf.startswith(b"%PDF-"):
            raise OcrFailed("tesseract wrote a PDF without a PDF header")
        height, width = self._shape
        words, paragraphs = parse_tsv(tsv, width=width, height=height)
        w, h = self._size
        if self._zoom != 1.0:
            words = tuple(replace(wd, box=_scale_box(wd.box, 1 / self._zoom, w, h)) for wd in words)
        text = "\n\n".join("\n".join(lines) for lines in paragraphs)
        result = OcrPage(words=words, text=text, mean_conf=mean_confidence(words), text_pdf=text_pdf)
        log.debug("ocr page %dx%d at %d dpi: %d words, mean conf %.1f", w, h, self._dpi, len(words), result.mean_conf)
        return result


def start(page: CleanPage, opts: OcrOptions = OcrOptions()) -> Recognition:
    """Start tesseract on one clean page (its grey page written first); the caller then calls result()
    or cancel() on what this returns, exactly once."""
    exe = _tesseract_path()
    image = page.ocr_image if page.ocr_image is not None else page.image
    if image.size == 0:
        raise OcrFailed(f"empty image {image.shape}")
    h, w = image.shape[:2]
    dpi = max(1, round(page.dpi))
    zoom = 1.0
    if page.perspective and page.dpi < PHOTO_OCR_DPI:
        # A rectified photo is soft (lens, JPEG, interpolation): at its native 200-260 dpi tesseract
        # takes the hook above (ổ, ể) for an acute (ố, ế); a cubic upsampling to 300 dpi reads them.
        zoom = PHOTO_OCR_DPI / page.dpi
        size = (round(w * zoom), round(h * zoom))
        image = np.asarray(cv2.resize(_grey(image), size, interpolation=cv2.INTER_CUBIC), dtype=np.uint8)
        dpi = round(PHOTO_OCR_DPI)
    _sweep_once()
    tmp = tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}{os.getpid()}-")
    try:
        folder = Path(tmp.name)
        src = folder / "page.pgm"
        _write_pgm(src, image)
        args = [exe, str(src), str(folder / "out"), "-l", opts.lang, "--psm", str(opts.psm), "--dpi", str(dpi)]
        args += ["-c", "textonly_pdf=1", "pdf", "tsv"]
        deadline = time.monotonic() + opts.timeout_s
        with (folder / "stderr").open("wb") as err_file:
            try:
                proc = subprocess.Popen(
                    _bound_to_us(args), stdin=subprocess.DEVNULL, stdout=err_file, stderr=err_file, env=_env()
                )
            except FileNotFoundError as err:
                raise OcrUnavailable(f"cannot start tesseract: {err}") from err
            except OSError as err:
                raise OcrFailed(f"cannot run tesseract: {err}") from err
    except BaseException:
        tmp.cleanup()
        raise
    shape = (int(image.shape[0]), int(image.shape[1]))
    return Recognition(
        proc,
        tmp,
        shape=shape,
        zoom=zoom,
        size=(w, h),
        dpi=dpi,
        lang=opts.lang,
        deadline=deadline,
        timeout_s=opts.timeout_s,
    )


def _scale_box(box: tuple[int, int, int, int], f: float, w: int, h: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return (
        min(w, math.floor(x0 * f)),
        min(h, math.floor(y0 * f)),
        min(w, math.ceil(x1 * f)),
        min(h, math.ceil(y1 * f)),
    )


_WRONG_ETH = re.compile("\u0110\u00d0|\u00d0\u0110|\u00d0")  # "ĐÐ" doubles and Icelandic eth -> "Đ"


def clean_word(text: str) -> str:
    """NFC, plus the one cheap fix: Vietnamese has no Icelandic eth, tesseract's `vie` emits it for Đ."""
    text = unicodedata.normalize("NFC", text.strip())
    return _WRONG_ETH.sub("\u0110", text)


def parse_tsv(tsv: str, *, width: int, height: int) -> tuple[tuple[Word, ...], list[list[str]]]:
    """Words in reading order, and the text as paragraphs of lines (a block break is a paragraph break)."""
    words: list[Word] = []
    paragraphs: list[list[str]] = []
    lines: list[list[str]] = []
    line_no = -1
    current_line: tuple[int, int, int] | None = None
    current_par: tuple[int, int] | None = None
    rows = csv.reader(tsv.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(rows, None)
    if header is None or header[:1] != ["level"]:
        raise OcrFailed("tesseract TSV output has no header")
    for row in rows:
        if len(row) < 12 or row[0] != "5":
            continue
        try:
            block, par, line = int(row[2]), int(row[3]), int(row[4])
            left, top, bw, bh = (int(v) for v in row[6:10])
            conf = float(row[10])
        except ValueError as err:
            raise OcrFailed("tesseract TSV output has a malformed row") from err
        text = clean_word("\t".join(row[11:]))
        if not text or conf < 0:
            continue
        if (block, par) != current_par:
            if lines:
                paragraphs.append([" ".join(ws) for ws in lines])
            lines = []
            current_par = (block, par)
            current_line = None
        if (block, par, line) != current_line:
            current_line = (block, par, line)
            line_no += 1
            lines.append([])
        lines[-1].append(text)
        box = (
            max(0, min(left, width)),
            max(0, min(top, height)),
            max(0, min(left + bw, width)),
            max(0, min(top + bh, height)),
        )
        words.append(Word(text=text, conf=max(0.0, min(conf, 100.0)), box=box, line=line_no))
    if lines:
        paragraphs.append([" ".join(ws) for ws in lines])
    return tuple(words), paragraphs


def mean_confidence(words: Sequence[Word]) -> float:
    """Mean word confidence weighted by the number of characters; 0 when there are no words."""
    chars = sum(len(w.text) for w in words)
    if chars == 0:
        return 0.0
    return sum(w.conf * len(w.text) for w in words) / chars


# --- orientation ---------------------------------------------------------------------------------------

_ROTATE = re.compile(rb"^Rotate:\s*(\d+)\s*$", re.MULTILINE)
_ORIENT_CONF = re.compile(rb"^Orientation confidence:\s*([0-9.]+)\s*$", re.MULTILINE)


def detect_orientation(
    image: PageImage, dpi: float, *, min_chars: int = 50, timeout_s: float = 30.0
) -> tuple[int, float]:
    """Clockwise rotation (0/90/180/270) that makes the page upright, and tesseract's OSD confidence.

    Runs tesseract OSD (``--psm 0``) on a grey copy downscaled to at most 150 dpi. OSD's ``Rotate:`` line is
    the clockwise correction (verified on pages rotated with numpy.rot90). Returns (0, 0.0) when OSD cannot
    decide (too little text, odd input). Raises OcrUnavailable when tesseract is missing.

    ``min_chars`` is tesseract's ``min_characters_to_try`` (it classifies up to 5x that many blobs): 50 (the
    default) gave confidences 10-18 on 12 pt pages; 20 is about 40 % faster with confidences 4-6.
    """
    exe = _tesseract_path()
    if image.size == 0 or min(image.shape[:2]) < 8:
        return 0, 0.0
    grey = _grey(image)
    osd_dpi = dpi
    if dpi > OSD_DPI:
        scale = OSD_DPI / dpi
        h, w = grey.shape
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        grey = np.asarray(cv2.resize(grey, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        osd_dpi = OSD_DPI
    args = [exe, "stdin", "stdout", "--psm", "0", "--dpi", str(max(1, round(osd_dpi)))]
    args += ["-c", f"min_characters_to_try={max(1, min_chars)}"]
    try:
        proc = _run(args, timeout_s=timeout_s, stdin=_pgm(grey))
    except OcrFailed as err:
        log.warning("orientation detection failed: %s", err.detail)
        return 0, 0.0
    rotate = _ROTATE.search(proc.stdout)
    conf = _ORIENT_CONF.search(proc.stdout)
    if proc.returncode != 0 or rotate is None:
        log.debug("OSD gave no orientation (exit %d)", proc.returncode)
        return 0, 0.0
    degrees = int(rotate.group(1)) % 360
    if degrees not in (0, 90, 180, 270):
        return 0, 0.0
    return degrees, float(conf.group(1)) if conf else 0.0
