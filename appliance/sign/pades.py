"""PAdES signing with pyHanko: the visible mark each Vietnamese rule requires, as an incremental update.

- officer (Circular 01/2023 Art. 8): personal certificate; the digitizer's name and the signing time,
  top-left of page 1.
- organisation (Decree 30/2020 App. I, Decree 137/2024 Art. 4): organisation certificate; no image; copy form
  ("SAO Y"), organisation name, "converted from paper" and by whom, signing time in ISO 8601 with +07:00;
  10 pt black Liberation Serif (metric-compatible with Times New Roman); top-right of page 1.

The signature is PAdES B-B (SHA-256), B-T when a timestamp server is configured and answers.
The input bytes stay a prefix of the output (incremental update), so a PDF/A stays PDF/A.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import logging
import os
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from appliance.errors import PdfSignFailed, SignError

log = logging.getLogger(__name__)

VN_TZ = dt.timezone(dt.timedelta(hours=7), "ICT")  # Vietnam has no daylight saving time
FONT = Path("/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf")
FONT_SIZE = 10
LEADING = 12
MARGIN = 14.0  # pt from the page edge (about 5 mm)
PADDING = 4
TSA_TIMEOUT_S = 10
CONVERTED_NOTE = "Chuyển đổi từ văn bản giấy"


@dataclass(frozen=True, slots=True)
class Mark:
    role: str  # "officer" | "organisation"
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True, slots=True)
class SignedPdf:
    data: bytes
    field_name: str
    level: str  # "B-B" or "B-T"
    signing_time: dt.datetime
    mark: Mark
    box: tuple[float, float, float, float]
    rotate: int = 0  # page 1's /Rotate; `box` is in unrotated page space


def iso_vn(when: dt.datetime) -> str:
    """ISO 8601 in Vietnam time, to the second: 2025-05-10T14:30:15+07:00."""
    return when.astimezone(VN_TZ).isoformat(timespec="seconds")


def officer_mark(digitizer: str, when: dt.datetime) -> Mark:
    return Mark("officer", (f"Người số hóa: {digitizer}", f"Thời gian: {iso_vn(when)}"))


def organisation_mark(organisation: str, converted_by: str, when: dt.datetime, copy_form: str = "SAO Y") -> Mark:
    return Mark(
        "organisation",
        (
            copy_form,
            organisation,
            CONVERTED_NOTE,
            f"Người chuyển đổi: {converted_by}",
            f"Thời gian ký: {iso_vn(when)}",
        ),
    )


@cache
def _measure() -> Any:
    from PIL import ImageFont

    return ImageFont.truetype(str(FONT), size=100)


def mark_size(mark: Mark) -> tuple[float, float]:
    """Width and height (pt) of a box that holds the text at 10 pt without shrinking."""
    font = _measure()
    width = max(font.getlength(line) for line in mark.lines) * FONT_SIZE / 100
    return width * 1.03 + 2 * PADDING + 6, LEADING * len(mark.lines) + 2 * PADDING + 6


def to_display(rotate: int, page: tuple[float, float, float, float], x: float, y: float) -> tuple[float, float]:
    """A point in unrotated page space -> the page as the reader sees it (/Rotate is clockwise), origin at
    the displayed bottom-left corner."""
    llx, lly, urx, ury = page
    r = rotate % 360
    if r == 90:
        return y - lly, urx - x
    if r == 180:
        return urx - x, ury - y
    if r == 270:
        return ury - y, x - llx
    return x - llx, y - lly


def to_user(rotate: int, page: tuple[float, float, float, float], x: float, y: float) -> tuple[float, float]:
    """The inverse of `to_display`."""
    llx, lly, urx, ury = page
    r = rotate % 360
    if r == 90:
        return urx - y, lly + x
    if r == 180:
        return urx - x, ury - y
    if r == 270:
        return llx + y, ury - x
    return llx + x, lly + y


def display_size(rotate: int, page: tuple[float, float, float, float]) -> tuple[float, float]:
    width, height = page[2] - page[0], page[3] - page[1]
    return (height, width) if rotate % 180 == 90 else (width, height)


def mark_box(page: tuple[float, float, float, float], mark: Mark, rotate: int = 0) -> tuple[float, float, float, float]:
    """The widget rectangle in unrotated page space: top-left (officer) or top-right (organisation) of the
    page as the reader sees it, i.e. after the page's clockwise /Rotate."""
    page_w, page_h = display_size(rotate, page)
    width, height = mark_size(mark)
    width = min(width, page_w / 2 - 2 * MARGIN)  # stays in its half of the page
    top = page_h - MARGIN
    if mark.role == "officer":
        x1 = MARGIN
    elif mark.role == "organisation":
        x1 = page_w - MARGIN - width
    else:
        raise SignError(f"unknown signing role {mark.role!r}")
    corners = [to_user(rotate, page, x, y) for x in (x1, x1 + width) for y in (top - height, top)]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    return (round(min(xs), 2), round(min(ys), 2), round(max(xs), 2), round(max(ys), 2))


def appearance_matrix(rotate: int) -> tuple[int, int, int, int, int, int]:
    """/Matrix of the mark's form XObject: turned counter-clockwise by the page's /Rotate, so the text
    reads upright once the viewer turns the page clockwise."""
    return {
        90: (0, 1, -1, 0, 0, 0),
        180: (-1, 0, 0, -1, 0, 0),
        270: (0, -1, 1, 0, 0, 0),
    }.get(rotate % 360, (1, 0, 0, 1, 0, 0))


def _inherited(node: Any, key: str) -> Any:
    while node is not None:
        value = node.get(key)
        if value is not None:
            return value
        parent = node.get("/Parent")
        node = parent.get_object() if parent is not None else None
    return None


def _page_box(writer: Any) -> tuple[tuple[float, float, float, float], int]:
    """Page 1's crop box (else media box) and its /Rotate (both inheritable)."""
    page_ref, _res = writer.find_page_for_modification(0)
    node = page_ref.get_object()
    box = _inherited(node, "/CropBox") or _inherited(node, "/MediaBox")
    if box is None:
        raise PdfSignFailed("page 1 has no MediaBox")
    rotate = int(_inherited(node, "/Rotate") or 0) % 360
    if rotate % 90:
        raise PdfSignFailed(f"page 1 has an invalid /Rotate {rotate}")
    x1, y1, x2, y2 = (float(v) for v in box)
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), rotate


def _field_name(reader: Any, role: str) -> str:
    from pyhanko.sign.fields import enumerate_sig_fields

    taken = {name for name, _value, _ref in enumerate_sig_fields(reader)}
    n = 1
    while f"{role}-{n}" in taken:
        n += 1
    return f"{role}-{n}"


@cache
def font_file() -> Path:
    """Liberation Serif rescaled to 1000 units per em and without hinting, written once to the temp dir.

    pyHanko 0.38 writes glyph widths and TJ kerning in font units but PDF reads them per 1000 em,
    so a 2048-upem font like Liberation Serif comes out spaced twice too wide. Rescaling fixes it.
    TrueType hinting (fpgm/prep/cvt tables and per-glyph instructions) is dropped: it was 6.5 KB of
    every signature's embedded subset, and viewers render 10 pt text without it.
    """
    from fontTools import subset
    from fontTools.ttLib import TTFont
    from fontTools.ttLib.scaleUpem import scale_upem

    source = FONT.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"appliance-{FONT.stem}-{digest}-upem1000-unhinted.ttf"
    if target.is_file():
        return target
    font = TTFont(io.BytesIO(source))
    if font["head"].unitsPerEm != 1000:
        scale_upem(font, 1000)
    options = subset.Options(
        hinting=False,
        retain_gids=True,
        layout_features=["*"],
        name_IDs=["*"],
        notdef_outline=True,
        layout_closure=False,
    )
    options.drop_tables += ["DSIG", "FFTM", "hdmx", "LTSH", "VDMX", "gasp"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(gids=list(range(len(font.getGlyphOrder()))))
    subsetter.subset(font)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    font.save(str(tmp))
    tmp.replace(target)
    return target


def _stamp_style(rotate: int = 0) -> Any:
    """The mark's text style; on a page with /Rotate the appearance is laid out in the reader's
    orientation and turned back by its /Matrix."""
    from pyhanko.pdf_utils import generic, layout
    from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
    from pyhanko.pdf_utils.text import TextBoxStyle
    from pyhanko.stamp import TextStamp, TextStampStyle

    class UprightTextStamp(TextStamp):
        def as_form_xobject(self) -> Any:
            xobject = super().as_form_xobject()
            if rotate % 360:
                matrix = [generic.NumberObject(v) for v in appearance_matrix(rotate)]  # type: ignore[no-untyped-call]
                xobject["/Matrix"] = generic.ArrayObject(matrix)
            return xobject

    @dataclass(frozen=True)
    class UprightTextStampStyle(TextStampStyle):
        def create_stamp(self, writer: Any, box: Any, text_params: dict[str, Any]) -> Any:
            if rotate % 180 == 90 and box.width_defined and box.height_defined:
                box = layout.BoxConstraints(width=box.height, height=box.width)
            return UprightTextStamp(writer=writer, style=self, box=box, text_params=text_params)

    return UprightTextStampStyle(
        stamp_text="%(mark)s",
        text_box_style=TextBoxStyle(
            font=GlyphAccumulatorFactory(str(font_file()), font_size=FONT_SIZE),
            font_size=FONT_SIZE,
            leading=LEADING,
            text_color=(0, 0, 0),
            box_layout_rule=layout.SimpleBoxLayoutRule(
                x_align=layout.AxisAlignment.ALIGN_MIN,
                y_align=layout.AxisAlignment.ALIGN_MAX,
                margins=layout.Margins(0, 0, 0, 0),
            ),
        ),
        inner_content_layout=layout.SimpleBoxLayoutRule(
            x_align=layout.AxisAlignment.ALIGN_MIN,
            y_align=layout.AxisAlignment.ALIGN_MAX,
            margins=layout.Margins(PADDING, PADDING, PADDING, PADDING),
        ),
        border_width=0,
        background=None,
    )


def _pdf_signer_class() -> Any:
    from pyhanko.sign import signers

    class FixedTimePdfSigner(signers.PdfSigner):
        """The time shown in the mark is the signing time in the CMS and the signature dictionary."""

        def __init__(self, *args: Any, system_time: dt.datetime, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._system_time = system_time

        def init_signing_session(self, pdf_out: Any, existing_fields_only: bool = False) -> Any:
            session = super().init_signing_session(pdf_out, existing_fields_only=existing_fields_only)
            session.system_time = self._system_time
            return session

    return FixedTimePdfSigner


def _new_field(data: bytes, mark: Mark) -> tuple[str, Any, Any, Any, int]:
    """The signature field for ``mark`` on page 1 of ``data``: (field name, field spec, stamp style, the
    mark's box, the page's rotation)."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.sign import fields

    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
        page, rotate = _page_box(writer)
        box = mark_box(page, mark, rotate)
        field_name = _field_name(writer.prev, mark.role)
    except (PdfError, ValueError, KeyError) as err:
        raise PdfSignFailed(f"cannot open the PDF for signing: {err}") from err
    spec = fields.SigFieldSpec(sig_field_name=field_name, on_page=0, box=box)  # type: ignore[arg-type]
    return field_name, spec, _stamp_style(rotate), box, rotate


def sign_pdf(
    data: bytes,
    signer: Any,
    mark: Mark,
    *,
    when: dt.datetime,
    tsa_url: str | None = None,
    reason: str | None = None,
    location: str | None = None,
    signer_name: str | None = None,
) -> SignedPdf:
    """Append one PAdES signature with its visible mark on page 1; `data` stays a byte-for-byte prefix."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.sign import fields, signers
    from pyhanko.sign.general import SigningError
    from pyhanko.sign.timestamps import HTTPTimeStamper, TimestampRequestError

    when = when.astimezone(VN_TZ).replace(microsecond=0)
    field_name, spec, style, box, rotate = _new_field(data, mark)
    cls = _pdf_signer_class()

    def attempt(timestamper: Any) -> bytes:
        meta = signers.PdfSignatureMetadata(
            field_name=field_name,
            md_algorithm="sha256",
            subfilter=fields.SigSeedSubFilter.PADES,
            reason=reason,
            location=location,
            name=signer_name,
            # B-B: the CMS size is known exactly (fixed signing time, fixed-size or maximum-size raw
            # signature in the dry run), so no 50 % safety margin of hex zeros. A TSA reply can vary.
            tight_size_estimates=timestamper is None,
        )
        pdf_signer = cls(
            meta, signer, timestamper=timestamper, stamp_style=style, new_field_spec=spec, system_time=when
        )
        w = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
        out = io.BytesIO()
        asyncio.run(
            pdf_signer.async_sign_pdf(w, appearance_text_params={"mark": mark.text.replace("%", "%%")}, output=out)
        )
        return out.getvalue()

    level = "B-B"
    try:
        if tsa_url:
            try:
                signed = attempt(HTTPTimeStamper(tsa_url, timeout=TSA_TIMEOUT_S))
                level = "B-T"
            except (TimestampRequestError, SigningError) as err:
                if not isinstance(err, TimestampRequestError) and "timestamp" not in str(err).lower():
                    raise
                log.warning("timestamp server %s did not answer (%s); signing PAdES B-B", tsa_url, type(err).__name__)
                signed = attempt(None)
        else:
            signed = attempt(None)
    except (SigningError, PdfError) as err:
        cause = err.__cause__ or err.__context__
        if cause is not None and type(cause).__module__.startswith("pkcs11"):
            raise cause from err  # the worker maps token errors (removed, session gone)
        raise PdfSignFailed(f"pyHanko could not sign: {err}") from err
    if not signed.startswith(data):
        raise PdfSignFailed("the signed PDF does not extend the original bytes")
    return SignedPdf(
        data=signed, field_name=field_name, level=level, signing_time=when, mark=mark, box=box, rotate=rotate
    )


# --- interrupted signing (remote signing services: appliance.sign.remote) ----------------------------
@dataclass(frozen=True, slots=True)
class PreparedPdf:
    """A PDF with its mark and a reserved signature hole, waiting for a signature made elsewhere.

    `data` is the whole prepared file (the input as a prefix); `signed_attrs` the DER of the CMS signed
    attributes whose hash the remote service signs. Everything here is JSON-safe once hex-encoded, so a
    batch survives a restart while the officer approves it on the phone."""

    data: bytes
    document_digest: bytes
    reserved_start: int
    reserved_end: int
    signed_attrs: bytes
    field_name: str
    level: str  # "B-B" or "B-T" (a timestamp is asked for when the signature arrives)
    signing_time: dt.datetime
    mark: Mark
    box: tuple[float, float, float, float]


def prepare_pdf(
    data: bytes,
    signer: Any,
    mark: Mark,
    *,
    when: dt.datetime,
    tsa_url: str | None = None,
    reason: str | None = None,
    location: str | None = None,
    signer_name: str | None = None,
) -> PreparedPdf:
    """The first half of `sign_pdf` (pyHanko's `digest_doc_for_signing`): the same field, mark, metadata and
    signing time, the document hashed and its signed attributes made by `signer` (an ExternalSigner with
    the remote certificate and the mechanism that will sign); no signature yet."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.sign import fields, signers
    from pyhanko.sign.general import SigningError
    from pyhanko.sign.timestamps import HTTPTimeStamper, TimestampRequestError

    when = when.astimezone(VN_TZ).replace(microsecond=0)
    field_name, spec, style, box, rotate = _new_field(data, mark)
    cls = _pdf_signer_class()

    async def attempt(timestamper: Any) -> tuple[Any, Any, Any]:
        meta = signers.PdfSignatureMetadata(
            field_name=field_name,
            md_algorithm="sha256",
            subfilter=fields.SigSeedSubFilter.PADES,
            reason=reason,
            location=location,
            name=signer_name,
        )
        pdf_signer = cls(
            meta, signer, timestamper=timestamper, stamp_style=style, new_field_spec=spec, system_time=when
        )
        w = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
        prep, _tbs, output = await pdf_signer.async_digest_doc_for_signing(
            w, appearance_text_params={"mark": mark.text.replace("%", "%%")}
        )
        attrs = await signer.signed_attrs(prep.document_digest, "sha256", use_pades=True)
        return prep, output, attrs

    level = "B-B"
    try:
        if tsa_url:
            try:
                prep, output, attrs = asyncio.run(attempt(HTTPTimeStamper(tsa_url, timeout=TSA_TIMEOUT_S)))
                level = "B-T"
            except (TimestampRequestError, SigningError) as err:
                if not isinstance(err, TimestampRequestError) and "timestamp" not in str(err).lower():
                    raise
                log.warning("timestamp server %s did not answer (%s); preparing PAdES B-B", tsa_url, type(err).__name__)
                prep, output, attrs = asyncio.run(attempt(None))
        else:
            prep, output, attrs = asyncio.run(attempt(None))
    except (SigningError, PdfError) as err:
        raise PdfSignFailed(f"pyHanko could not prepare the signature: {err}") from err
    prepared = output.getvalue()
    if not prepared.startswith(data):
        raise PdfSignFailed("the prepared PDF does not extend the original bytes")
    return PreparedPdf(
        data=prepared,
        document_digest=prep.document_digest,
        reserved_start=prep.reserved_region_start,
        reserved_end=prep.reserved_region_end,
        signed_attrs=attrs.dump(),
        field_name=field_name,
        level=level,
        signing_time=when,
        mark=mark,
        box=box,
    )


def finish_pdf(prepared: PreparedPdf, signature_cms: bytes) -> bytes:
    """The second half: the CMS made over `prepared.signed_attrs` written into the reserved hole."""
    from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
    from pyhanko.sign.signers.pdf_signer import PdfTBSDocument

    digest = PreparedByteRangeDigest(prepared.document_digest, prepared.reserved_start, prepared.reserved_end)
    out = io.BytesIO(prepared.data)
    try:
        asyncio.run(PdfTBSDocument.async_finish_signing(out, digest, signature_cms))
    except Exception as err:  # noqa: BLE001 - pyHanko raises several kinds for a CMS that does not fit
        raise PdfSignFailed(f"cannot embed the remote signature: {err}") from err
    return out.getvalue()
