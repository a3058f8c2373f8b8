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


def mark_box(page: tuple[float, float, float, float], mark: Mark) -> tuple[float, float, float, float]:
    """The widget rectangle: top-left (officer) or top-right (organisation) of the page box."""
    llx, lly, urx, ury = page
    width, height = mark_size(mark)
    width = min(width, (urx - llx) / 2 - 2 * MARGIN)  # stays in its half of the page
    top = ury - MARGIN
    if mark.role == "officer":
        x1 = llx + MARGIN
    elif mark.role == "organisation":
        x1 = urx - MARGIN - width
    else:
        raise SignError(f"unknown signing role {mark.role!r}")
    return (round(x1, 2), round(top - height, 2), round(x1 + width, 2), round(top, 2))


def _page_box(writer: Any) -> tuple[float, float, float, float]:
    page_ref, _res = writer.find_page_for_modification(0)
    node = page_ref.get_object()
    box = None
    while node is not None and box is None:
        box = node.get("/CropBox") or node.get("/MediaBox")
        parent = node.get("/Parent")
        node = parent.get_object() if parent is not None else None
    if box is None:
        raise PdfSignFailed("page 1 has no MediaBox")
    rotate = int(page_ref.get_object().get("/Rotate", 0))
    if rotate % 360:
        log.warning("page 1 has /Rotate %d; the mark is placed in unrotated page space", rotate)
    x1, y1, x2, y2 = (float(v) for v in box)
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def _field_name(reader: Any, role: str) -> str:
    from pyhanko.sign.fields import enumerate_sig_fields

    taken = {name for name, _value, _ref in enumerate_sig_fields(reader)}
    n = 1
    while f"{role}-{n}" in taken:
        n += 1
    return f"{role}-{n}"


@cache
def font_file() -> Path:
    """Liberation Serif rescaled to 1000 units per em, written once to the temp dir.

    pyHanko 0.38 writes glyph widths and TJ kerning in font units but PDF reads them per 1000 em,
    so a 2048-upem font like Liberation Serif comes out spaced twice too wide. Rescaling fixes it.
    """
    from fontTools.ttLib import TTFont
    from fontTools.ttLib.scaleUpem import scale_upem

    source = FONT.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"appliance-{FONT.stem}-{digest}-upem1000.ttf"
    if target.is_file():
        return target
    font = TTFont(io.BytesIO(source))
    if font["head"].unitsPerEm == 1000:
        return FONT
    scale_upem(font, 1000)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    font.save(str(tmp))
    tmp.replace(target)
    return target


def _stamp_style() -> Any:
    from pyhanko.pdf_utils import layout
    from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
    from pyhanko.pdf_utils.text import TextBoxStyle
    from pyhanko.stamp import TextStampStyle

    return TextStampStyle(
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

    when = when.astimezone(VN_TZ).replace(microsecond=0)
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
        box = mark_box(_page_box(writer), mark)
        field_name = _field_name(writer.prev, mark.role)
    except (PdfError, ValueError, KeyError) as err:
        raise PdfSignFailed(f"cannot open the PDF for signing: {err}") from err
    meta = signers.PdfSignatureMetadata(
        field_name=field_name,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=reason,
        location=location,
        name=signer_name,
    )
    spec = fields.SigFieldSpec(sig_field_name=field_name, on_page=0, box=box)  # type: ignore[arg-type]
    level = "B-B"
    timestamper = None
    if tsa_url:
        from pyhanko.sign.timestamps import HTTPTimeStamper

        timestamper = HTTPTimeStamper(tsa_url, timeout=10)
        level = "B-T"
    cls = _pdf_signer_class()

    def attempt(ts: Any) -> bytes:
        pdf_signer = cls(
            meta, signer, timestamper=ts, stamp_style=_stamp_style(), new_field_spec=spec, system_time=when
        )
        w = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
        out = io.BytesIO()
        asyncio.run(
            pdf_signer.async_sign_pdf(w, appearance_text_params={"mark": mark.text.replace("%", "%%")}, output=out)
        )
        return out.getvalue()

    try:
        try:
            signed = attempt(timestamper)
        except SigningError as err:
            if timestamper is None or "timestamp" not in str(err).lower() and "tsa" not in str(err).lower():
                raise
            log.warning("timestamp server %s unreachable (%s); signing PAdES B-B", tsa_url, type(err).__name__)
            level = "B-B"
            signed = attempt(None)
    except (SigningError, PdfError) as err:
        cause = err.__cause__ or err.__context__
        if cause is not None and type(cause).__module__.startswith("pkcs11"):
            raise cause from err  # the worker maps token errors (removed, session gone)
        raise PdfSignFailed(f"pyHanko could not sign: {err}") from err
    if not signed.startswith(data):
        raise PdfSignFailed("the signed PDF does not extend the original bytes")
    return SignedPdf(data=signed, field_name=field_name, level=level, signing_time=when, mark=mark, box=box)
