"""File import, the third page source: images (JPEG, PNG, TIFF incl. multi-page) and PDFs.

A PDF that carries digital signatures is never re-rendered: :func:`inspect_pdf` says whether it
is signed, :func:`validate_signatures` reports on each signature (pyHanko) without touching the
file, and :func:`iter_file` refuses it with SignedPdf so the caller keeps it byte for byte.

Memory budget: :func:`iter_file` decodes one page at a time from the file on disk (a PDF is opened,
never read whole; one page is rendered or extracted only when the caller asks for it), and a page
larger than the pixel budget (``max_pixels``, A4 at 600 dpi by default) is scaled down to it as it is
decoded (JPEG even decodes at the reduced size), its dpi adjusted and the reduction logged.
:func:`count_pages` tells how many pages a file holds without decoding any, so a page budget can be
enforced before the first page is decoded.
"""

from __future__ import annotations

import logging
import math
import threading
import warnings
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pikepdf
from PIL import Image, ImageOps, UnidentifiedImageError

from appliance.errors import (
    DecompressionBomb,
    EncryptedPdf,
    InputError,
    NoPages,
    NotAnImage,
    SignedPdf,
    UnreadableFile,
)
from appliance.model import PageImage, RawPage, Source

if TYPE_CHECKING:  # pdfium renders PDF pages only: an image input does not import it (start-up of a one-page run)
    import pypdfium2 as pdfium

log = logging.getLogger(__name__)

MAX_PIXELS = 120_000_000  # per page, as declared: above it a file is refused (a bomb); 600 dpi A3 is ~70 MP
PAGE_PIXELS = 35_000_000  # the default pixel budget of a decoded page: A4 at 600 dpi (4961 x 7016)
DEFAULT_DPI = 300.0
RENDER_DPI = 300.0
# PDFium is not thread-safe: every call into it (the web's page images too) holds this lock; held per
# page, never across a yield.
PDFIUM_LOCK = threading.RLock()
_ORIENTATION = 0x0112  # EXIF tag
_DPI_RANGE = (50.0, 2400.0)  # outside this, metadata DPI is treated as absent

# Pillow's own bomb guard follows our limit: a warning above MAX_PIXELS (which iter_file turns
# into an error), an error above twice that. Appliance-wide policy for untrusted images.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


@dataclass(frozen=True, slots=True)
class PdfInfo:
    pages: int
    signed: bool
    signature_fields: tuple[str, ...]  # names of filled signature fields
    version: str  # "1.7", ...


@dataclass(frozen=True, slots=True)
class SignatureReport:
    field: str
    intact: bool  # the signed byte ranges hash to the signed digest
    valid: bool  # the cryptographic signature verifies with the signer's key
    trusted: str  # "yes" | "no" | "unknown" (unknown when no trust roots were given)
    signer: str  # signer certificate subject, human readable
    signing_time: str | None  # ISO 8601, as the signer claims it
    coverage: str  # "entire_file" | "entire_revision" | "partial" | "unclear"
    whole_file: bool  # nothing was appended after this signature
    problem: str | None = None  # English detail when validation itself failed


# --- errors at the boundary --------------------------------------------------------------------


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(1024)
    except OSError as err:  # missing, a directory, no permission
        raise UnreadableFile(f"{path.name}: {err.strerror or err}", file=path.name) from err


_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"II*\x00", b"MM\x00*", b"BM", b"RIFF")


def _is_pdf(head: bytes) -> bool:
    """A PDF header in the first KB, unless the file starts as an image (a PNG text chunk may hold "%PDF-")."""
    return b"%PDF-" in head and not head.startswith(_IMAGE_MAGIC)


# --- images --------------------------------------------------------------------------------------


def _dpi_of(img: Image.Image) -> float:
    dpi = img.info.get("dpi")
    try:
        x = float(dpi[0]) if isinstance(dpi, tuple) else float(dpi) if dpi else 0.0
    except (TypeError, ValueError, IndexError):
        x = 0.0
    if not (_DPI_RANGE[0] <= x <= _DPI_RANGE[1]):
        return DEFAULT_DPI
    return round(x, 1)  # PNG stores pixels per metre: 300 dpi reads back as 299.9994


def _to_array(img: Image.Image) -> PageImage:
    """Grey (H, W) or RGB (H, W, 3) uint8."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or float(arr.max()) > 255.0 else 255.0
        return np.clip(arr * (255.0 / top), 0, 255).round().astype(np.uint8)
    if mode == "L":
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
    if mode == "RGB":
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
    if mode == "1":
        return np.ascontiguousarray(np.asarray(img.convert("L"), dtype=np.uint8))
    if mode in ("LA", "RGBA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
        if mode == "LA":
            return np.ascontiguousarray(np.asarray(img.convert("L"), dtype=np.uint8))
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def _check_size(width: int, height: int, name: str) -> None:
    if width * height > MAX_PIXELS:
        raise DecompressionBomb(
            f"{name}: {width}x{height} = {width * height / 1e6:.0f} MP > {MAX_PIXELS / 1e6:.0f} MP",
            file=name,
        )


def _budget_scale(width: int, height: int, max_pixels: int) -> float:
    """The factor (<= 1) that brings width x height within ``max_pixels``."""
    pixels = width * height
    return 1.0 if pixels <= max_pixels else math.sqrt(max_pixels / pixels)


def _fit(img: Image.Image, dpi: float, max_pixels: int, name: str) -> tuple[Image.Image, float]:
    """The image scaled down to the pixel budget (and its dpi), or as it is when it fits."""
    scale = _budget_scale(img.width, img.height, max_pixels)
    if scale >= 1.0:
        return img, dpi
    width, height = max(1, int(img.width * scale)), max(1, int(img.height * scale))
    if img.mode in ("1", "P", "PA", "I;16", "I;16B", "I;16L"):  # modes resize does not take
        if img.mode == "1":
            img = img.convert("L")
        elif img.mode.startswith("I;16"):
            img = img.convert("I")
        else:
            img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    small = img.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    factor = width / img.width
    log.info(
        "page scaled down to the pixel budget file=%s from=%dx%d to=%dx%d dpi=%.0f->%.0f",
        name,
        img.width,
        img.height,
        width,
        height,
        dpi,
        dpi * factor,
    )
    return small, round(dpi * factor, 1)


def _decode_frame(img: Image.Image, index: int, label: str, name: str, max_pixels: int) -> RawPage:
    """Frame ``index`` of an open image, decoded within the pixel budget (errors mapped here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img.seek(index)
            _check_size(img.width, img.height, name)
            declared = img.width
            scale = _budget_scale(img.width, img.height, max_pixels)
            if scale < 1.0 and img.format == "JPEG":  # libjpeg decodes at 1/2, 1/4 or 1/8 directly
                img.draft(img.mode, (math.ceil(img.width * scale), math.ceil(img.height * scale)))
            img.load()
            dpi = _dpi_of(img) * img.width / declared  # a draft decode keeps the physical size
            page, dpi = _fit(img, round(dpi, 1), max_pixels, name)  # before turning: one full-size copy less
            if page.getexif().get(_ORIENTATION, 1) != 1:
                page = ImageOps.exif_transpose(page)
            return RawPage(image=_to_array(page), dpi=dpi, source=Source.FILE, label=label)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise DecompressionBomb(f"{name}: {err}", file=name) from err
        except InputError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError) as err:  # truncated / corrupt data
            raise UnreadableFile(f"{name}: {err}", file=name) from err


def _open_image(path: Path) -> Image.Image:
    name = path.name
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise DecompressionBomb(f"{name}: {err}", file=name) from err
        except UnidentifiedImageError as err:
            raise NotAnImage(f"{name}: not an image or PDF", file=name) from err
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            raise UnreadableFile(f"{name}: {err}", file=name) from err


def _frame_count(img: Image.Image) -> int:
    return int(getattr(img, "n_frames", 1) or 1)


def _iter_image(path: Path, max_pixels: int) -> Iterator[RawPage]:
    """The frames of an image file, one decoded at a time."""
    name = path.name
    with _open_image(path) as img:
        n = _frame_count(img)
        if n < 1:
            raise NoPages(f"{name}: no frames", file=name)
        for index in range(n):
            yield _decode_frame(img, index, name if n == 1 else f"{name} [{index + 1}]", name, max_pixels)


# --- PDFs ------------------------------------------------------------------------------------------


def _open_pdf(path: Path) -> pikepdf.Pdf:
    try:
        return pikepdf.open(path)
    except pikepdf.PasswordError as err:
        raise EncryptedPdf(f"{path.name}: needs a password", file=path.name) from err
    except (pikepdf.PdfError, OSError, ValueError) as err:
        raise UnreadableFile(f"{path.name}: {err}", file=path.name) from err


def _signature_fields(pdf: pikepdf.Pdf) -> list[str]:
    """Names of signature fields that hold a signature value (walks the AcroForm field tree)."""
    acro = pdf.Root.get("/AcroForm")
    if not isinstance(acro, pikepdf.Dictionary):
        return []
    names: list[str] = []
    seen: set[tuple[int, int]] = set()
    todo: list[tuple[Any, str, Any]] = [(f, "", None) for f in acro.get("/Fields", [])]
    while todo:
        field, parent, inherited_ft = todo.pop()
        if not isinstance(field, pikepdf.Dictionary):
            continue
        if field.is_indirect:
            if field.objgen in seen:
                continue
            seen.add(field.objgen)
        part = str(field.get("/T", ""))
        full = f"{parent}.{part}" if parent and part else part or parent
        ft = field.get("/FT", inherited_ft)
        if ft == pikepdf.Name.Sig and isinstance(field.get("/V"), pikepdf.Dictionary):
            names.append(full)
        for kid in field.get("/Kids", []):
            todo.append((kid, full, ft))
    return sorted(names)


def inspect_pdf(path: Path | str) -> PdfInfo:
    """Page count and whether the PDF carries digital signatures. Never modifies the file."""
    path = Path(path)
    head = _read_head(path)
    if not _is_pdf(head):
        raise NotAnImage(f"{path.name}: not a PDF", file=path.name)
    with _open_pdf(path) as pdf:
        fields = _signature_fields(pdf)
        perms = pdf.Root.get("/Perms")
        docmdp = isinstance(perms, pikepdf.Dictionary) and "/DocMDP" in perms
        return PdfInfo(
            pages=len(pdf.pages),
            signed=bool(fields) or docmdp,
            signature_fields=tuple(fields),
            version=str(pdf.pdf_version),
        )


_ALLOWED_OPS = {
    # graphics state, colour, marked content, text positioning/state
    "q", "Q", "cm", "gs", "w", "J", "j", "M", "d", "ri", "i",
    "CS", "cs", "SC", "SCN", "sc", "scn", "G", "g", "RG", "rg", "K", "k",
    "BMC", "BDC", "EMC", "MP", "DP", "BX", "EX",
    "BT", "ET", "Tc", "Tw", "Tz", "TL", "Tf", "Tr", "Ts", "Td", "TD", "Tm", "T*",
}  # fmt: skip
_TEXT_SHOW = {"Tj", "TJ", "'", '"'}


def _matmul(a: list[float], b: list[float]) -> list[float]:
    """PDF matrix product a x b for [a b c d e f] matrices."""
    return [
        a[0] * b[0] + a[1] * b[2],
        a[0] * b[1] + a[1] * b[3],
        a[2] * b[0] + a[3] * b[2],
        a[2] * b[1] + a[3] * b[3],
        a[4] * b[0] + a[5] * b[2] + b[4],
        a[4] * b[1] + a[5] * b[3] + b[5],
    ]


def _single_image(pdf: pikepdf.Pdf, index: int) -> tuple[Image.Image, float] | None:
    """The page's one full-page image at native resolution, when that is all the page shows.

    Anything else (vector drawing, visible text, rotation, several images, masks) -> None,
    and the caller renders the page instead.
    """
    page = pdf.pages[index]
    if int(page.obj.get("/Rotate", 0)) % 360 != 0:
        return None
    resources = page.obj.get("/Resources")
    xobjects = resources.get("/XObject") if isinstance(resources, pikepdf.Dictionary) else None
    if not isinstance(xobjects, pikepdf.Dictionary) or len(xobjects.keys()) != 1:
        return None  # no image, several, or unknown: render
    ((xname, xobj),) = xobjects.items()
    if xobj.get("/Subtype") != pikepdf.Name.Image:
        return None
    if "/SMask" in xobj or "/Mask" in xobj:
        return None
    ctm = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    stack: list[list[float]] = []
    placed: list[float] | None = None
    render_mode = 0
    for instruction in pikepdf.parse_content_stream(page):
        if not isinstance(instruction, pikepdf.ContentStreamInstruction):
            return None  # an inline image
        operands, name = instruction.operands, str(instruction.operator)
        if name == "q":
            stack.append(ctm)
        elif name == "Q":
            ctm = stack.pop() if stack else ctm
        elif name == "cm":
            ctm = _matmul([float(x) for x in operands], ctm)
        elif name == "Tr":
            render_mode = int(operands[0])
        elif name == "Do":
            if str(operands[0]) != xname or placed is not None:
                return None
            placed = ctm
        elif name in _TEXT_SHOW:
            if render_mode != 3:  # visible text would be lost
                return None
        elif name not in _ALLOWED_OPS:
            return None
    if placed is None:
        return None
    a, b, c, d, e, f = placed
    if abs(b) > 1e-6 or abs(c) > 1e-6 or a <= 0 or d <= 0:
        return None  # rotated or mirrored placement
    box = [float(v) for v in page.mediabox]
    pw, ph = box[2] - box[0], box[3] - box[1]
    if a < 0.98 * pw or d < 0.98 * ph:
        return None  # does not cover the page
    if not isinstance(xobj, pikepdf.Stream):
        return None
    width, height = int(xobj.get("/Width", 0)), int(xobj.get("/Height", 0))
    _check_size(width, height, "pdf image")  # as declared, before a pixel is decoded
    dpi_x, dpi_y = width / (a / 72.0), height / (d / 72.0)
    if width <= 0 or height <= 0 or abs(dpi_x - dpi_y) > 0.02 * dpi_x:
        return None
    try:
        pil = pikepdf.PdfImage(xobj).as_pil_image()
    except Exception as err:  # unsupported filter/colour space: render instead
        log.debug("native image extraction failed page=%d err=%s", index, err)
        return None
    if pil.size != (width, height):
        return None
    return pil, round(dpi_x, 1)


def _iter_pdf(path: Path, max_pixels: int) -> Iterator[RawPage]:
    """The pages of an unsigned PDF, one at a time: the page's own scan when it is one full-page image,
    else a rendering at RENDER_DPI (less when that would exceed the pixel budget)."""
    import pypdfium2 as pdfium

    name = path.name
    info = inspect_pdf(path)
    if info.signed:
        raise SignedPdf(f"{name}: carries {len(info.signature_fields)} signature(s)", file=name)
    if info.pages == 0:
        raise NoPages(f"{name}: PDF has no pages", file=name)
    with _open_pdf(path) as pdf:
        try:
            with PDFIUM_LOCK:
                doc = pdfium.PdfDocument(str(path))  # reads from the file as pages are asked for
        except pdfium.PdfiumError as err:
            raise UnreadableFile(f"{name}: {err}", file=name) from err
        try:
            with PDFIUM_LOCK:
                count = len(doc)
            for i in range(count):
                yield _pdf_page(pdf, doc, i, name, max_pixels)
        finally:
            with PDFIUM_LOCK:
                doc.close()


def _pdf_page(pdf: pikepdf.Pdf, doc: pdfium.PdfDocument, i: int, name: str, max_pixels: int) -> RawPage:
    import pypdfium2 as pdfium

    label = f"{name} [{i + 1}]"
    try:
        got = _single_image(pdf, i)
    except DecompressionBomb:
        raise
    except Exception as err:  # odd content streams: render instead
        log.debug("page %d: single-image check failed: %s", i, err)
        got = None
    if got is not None:
        pil, dpi = got
        pil, dpi = _fit(pil, dpi, max_pixels, label)
        return RawPage(image=_to_array(pil), dpi=dpi, source=Source.FILE, label=label)
    try:
        with PDFIUM_LOCK:
            page = doc[i]
            try:
                w_pt, h_pt = page.get_size()
                full = (round(w_pt * RENDER_DPI / 72.0), round(h_pt * RENDER_DPI / 72.0))
                dpi = RENDER_DPI * _budget_scale(full[0], full[1], max_pixels)
                while dpi < RENDER_DPI and math.ceil(w_pt * dpi / 72.0) * math.ceil(h_pt * dpi / 72.0) > max_pixels:
                    dpi *= 0.995  # the rendered size is rounded up
                if dpi < RENDER_DPI:
                    log.info("page rendered within the pixel budget file=%s dpi=%.0f", label, dpi)
                _check_size(round(w_pt * dpi / 72.0), round(h_pt * dpi / 72.0), name)
                # RGB straight from pdfium and one copy out of its buffer: through PIL (4 bytes a
                # pixel) the rendering took three copies of the page at once
                bitmap = page.render(scale=dpi / 72.0, rev_byteorder=True)
                try:
                    image = _bitmap_array(bitmap)
                finally:
                    bitmap.close()
            finally:
                page.close()
    except pdfium.PdfiumError as err:
        raise UnreadableFile(f"{name}: {err}", file=name) from err
    return RawPage(image=image, dpi=round(dpi, 1), source=Source.FILE, label=label)


def _bitmap_array(bitmap: pdfium.PdfBitmap) -> PageImage:
    """A contiguous copy of a rendered page: RGB (H, W, 3), or grey for a grey bitmap."""
    view = bitmap.to_numpy()
    if view.ndim == 3 and view.shape[2] == 4:  # a format with alpha or padding: flatten as before
        return _to_array(bitmap.to_pil())
    if view.ndim == 3 and not bitmap.rev_byteorder:
        view = view[..., ::-1]  # BGR
    return np.array(view, dtype=np.uint8, order="C")


def count_pages(path: Path | str) -> int:
    """How many pages a file holds (frames of an image, pages of a PDF), decoding none.

    Raises what :func:`iter_file` raises for a file that cannot be opened."""
    path = Path(path)
    if _is_pdf(_read_head(path)):
        return inspect_pdf(path).pages
    with _open_image(path) as img:
        try:
            return _frame_count(img)
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            raise UnreadableFile(f"{path.name}: {err}", file=path.name) from err


def probe(path: Path | str) -> int:
    """Cheap checks on an uploaded file before it is accepted: its type, its declared size (bombs), a
    password or signatures on a PDF, a corrupt image header. No pixel is decoded, so this is fast and
    small; :func:`iter_file` decodes later, outside the request. Returns the number of pages (for the
    page budget); raises what iter_file raises."""
    path = Path(path)
    name = path.name
    head = _read_head(path)
    if _is_pdf(head):
        info = inspect_pdf(path)
        if info.signed:
            raise SignedPdf(f"{name}: carries {len(info.signature_fields)} signature(s)", file=name)
        if info.pages == 0:
            raise NoPages(f"{name}: PDF has no pages", file=name)
        return info.pages
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                _check_size(img.width, img.height, name)
                pages = _frame_count(img)
                img.verify()  # structure and checksums, without decoding the pixels
                return pages
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise DecompressionBomb(f"{name}: {err}", file=name) from err
        except UnidentifiedImageError as err:
            raise NotAnImage(f"{name}: not an image or PDF", file=name) from err
        except InputError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            raise UnreadableFile(f"{name}: {err}", file=name) from err


def iter_file(path: Path | str, *, max_pixels: int = PAGE_PIXELS) -> Generator[RawPage, None, None]:
    """Pages of an image file or an unsigned PDF, in order, decoded one at a time as they are asked for.

    A page over ``max_pixels`` is scaled down to it (dpi adjusted, logged). Close the generator (or
    exhaust it) to close the file. Raises UnreadableFile, NotAnImage, DecompressionBomb, NoPages,
    EncryptedPdf or SignedPdf — the first of them before the first page is yielded, when the file's
    structure says so.
    """
    path = Path(path)
    head = _read_head(path)
    pages = _iter_pdf(path, max_pixels) if _is_pdf(head) else _iter_image(path, max_pixels)
    count = 0
    while True:
        try:
            # yielded without a name: a suspended generator would keep the page alive (26 MB at A4 300 dpi)
            # while the consumer cleans and encodes it
            yield next(pages)
        except StopIteration:
            break
        count += 1
    log.info("imported file=%s pages=%d", path.name, count)


def load_file(path: Path | str, *, max_pixels: int = PAGE_PIXELS) -> list[RawPage]:
    """All pages of a file at once: only for small files and tests (see :func:`iter_file`)."""
    return list(iter_file(path, max_pixels=max_pixels))


# --- signatures --------------------------------------------------------------------------------------


def _trust_context(trust_roots: Sequence[Path | bytes]) -> Any:
    from pyhanko.keys import load_certs_from_pemder_data
    from pyhanko_certvalidator import ValidationContext

    roots = []
    for root in trust_roots:
        data = root if isinstance(root, bytes) else Path(root).read_bytes()
        roots.extend(load_certs_from_pemder_data(data))
    return ValidationContext(trust_roots=roots, allow_fetching=False)


def validate_signatures(path: Path | str, *, trust_roots: Sequence[Path | bytes] = ()) -> list[SignatureReport]:
    """Validate every embedded signature with pyHanko. Reads the file; never modifies it.

    Without ``trust_roots`` the trust of the signer is "unknown" (the signature can still be
    intact and valid).
    """
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature

    path = Path(path)
    _read_head(path)
    context = _trust_context(trust_roots)
    reports: list[SignatureReport] = []
    try:
        with path.open("rb") as f:
            reader = PdfFileReader(f, strict=False)
            if reader.encrypted:
                raise EncryptedPdf(f"{path.name}: encrypted", file=path.name)
            for emb in reader.embedded_signatures:
                reports.append(_report(emb, context, bool(trust_roots), validate_pdf_signature))
    except InputError:
        raise
    except Exception as err:  # pyHanko's PdfReadError and friends
        raise UnreadableFile(f"{path.name}: {err}", file=path.name) from err
    return reports


def _report(emb: Any, context: Any, have_roots: bool, validate: Any) -> SignatureReport:
    field = str(emb.field_name)
    try:
        status = validate(emb, context)
    except Exception as err:  # a mangled signature: report it, do not fail the whole file
        return SignatureReport(
            field=field,
            intact=False,
            valid=False,
            trusted="no" if have_roots else "unknown",
            signer="",
            signing_time=None,
            coverage="unclear",
            whole_file=False,
            problem=f"{type(err).__name__}: {err}",
        )
    coverage_name = str(getattr(status.coverage, "name", status.coverage)).lower()
    coverage = {
        "entire_file": "entire_file",
        "entire_revision": "entire_revision",
        "contiguous_block_from_start": "partial",
    }.get(coverage_name, "unclear")
    when = status.signer_reported_dt
    return SignatureReport(
        field=field,
        intact=bool(status.intact),
        valid=bool(status.valid),
        trusted=("yes" if status.trusted else "no") if have_roots else "unknown",
        signer=str(status.signing_cert.subject.human_friendly),
        signing_time=when.isoformat() if when is not None else None,
        coverage=coverage,
        whole_file=coverage == "entire_file",
    )


__all__ = [
    "DEFAULT_DPI",
    "MAX_PIXELS",
    "PAGE_PIXELS",
    "PdfInfo",
    "SignatureReport",
    "count_pages",
    "inspect_pdf",
    "iter_file",
    "load_file",
    "probe",
    "validate_signatures",
]
