"""Searchable PDF/A-2b from encoded pages and their OCR text layers (pikepdf).

Each page draws, in order:
  1. the background image (JPEG, colour or grey) scaled to the full page;
  2. for MRC pages, the text mask as an /ImageMask stencil filled black (CCITT G4, lossless);
  3. the invisible text layer: tesseract's ``textonly_pdf`` page as a Form XObject, scaled to
     the page box (render mode 3, GlyphLessFont embedded by tesseract).

PDF/A-2b parts: sRGB output intent (ICC profile made by Pillow/LittleCMS, no file dependency),
XMP metadata with pdfaid part 2 / conformance B, a DocInfo dictionary that matches the XMP, a
document ID in the trailer (derived from the content, so the same input gives the same file),
no encryption, no transparency groups. Images are embedded as they were encoded: never
re-compressed.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pikepdf
from pikepdf import Array, Dictionary, Name, Pdf, Stream
from PIL import ImageCms

from appliance.errors import NoPages, PdfBuildFailed
from appliance.model import DocumentMeta, EncodedPage, ImageLayer, OcrPage, ReviewWord

log = logging.getLogger(__name__)

PRODUCER = f"appliance (pikepdf {pikepdf.__version__})"
CREATOR_TOOL = "appliance"

_XMP_NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "pdf": "http://ns.adobe.com/pdf/1.3/",
    "xmpTPg": "http://ns.adobe.com/xap/1.0/t/pg/",
    "pdfaid": "http://www.aiim.org/pdfa/ns/id/",
}


def assemble(pages: Sequence[tuple[EncodedPage, OcrPage]], meta: DocumentMeta) -> bytes:
    """One PDF/A-2b document: one page per item, in the given order."""
    if not pages:
        raise NoPages("cannot assemble a document without pages")
    pdf = Pdf.new()
    stamp = _pdf_date(_parse_datetime(meta.digitized_at) or datetime.now(UTC))
    try:
        for index, (encoded, ocr) in enumerate(pages):
            _add_page(pdf, encoded, ocr, index, stamp)
        _add_pdfa(pdf, meta, len(pages))
        out = io.BytesIO()
        pdf.save(
            out,
            min_version="1.7",
            deterministic_id=True,
            object_stream_mode=pikepdf.ObjectStreamMode.generate,
        )
    except pikepdf.PdfError as err:
        raise PdfBuildFailed(f"pikepdf: {err}") from err
    finally:
        pdf.close()
    data = out.getvalue()
    log.info("assembled %d page(s), %d bytes", len(pages), len(data))
    return data


# --- pages ----------------------------------------------------------------------------------


def _add_page(pdf: Pdf, encoded: EncodedPage, ocr: OcrPage, index: int, stamp: str) -> None:
    w, h = encoded.width_pt, encoded.height_pt
    if w <= 0 or h <= 0:
        raise ValueError(f"page {index + 1}: empty page box {w}x{h}")
    xobjects = Dictionary()
    ops = [f"q {_num(w)} 0 0 {_num(h)} 0 0 cm /Bg Do Q"]
    xobjects.Bg = _image(pdf, encoded.background)
    if encoded.mask is not None:
        xobjects.Mask = _stencil(pdf, encoded.mask)
        ops.append(f"q 0 g {_num(w)} 0 0 {_num(h)} 0 0 cm /Mask Do Q")
    if ocr.text_pdf:
        form, bbox = _text_form(pdf, ocr.text_pdf, index)
        x0, y0, x1, y1 = bbox
        sx, sy = w / (x1 - x0), h / (y1 - y0)
        xobjects.Text = form
        ops.append(f"q {_num(sx)} 0 0 {_num(sy)} {_num(-x0 * sx)} {_num(-y0 * sy)} cm /Text Do Q")
    else:
        log.warning("page %d has no text layer (OCR produced none)", index + 1)
    page_dict = Dictionary(
        Type=Name.Page,
        MediaBox=Array([0, 0, _dec(w), _dec(h)]),
        Resources=Dictionary(XObject=xobjects),
        Contents=Stream(pdf, "\n".join(ops).encode("ascii")),
    )
    doubtful = _review_words(encoded, ocr)
    if doubtful:
        # Private page data (PDF 32000-1 14.5, allowed in PDF/A): the words to check on the review page.
        page_dict.LastModified = pikepdf.String(stamp)
        page_dict.PieceInfo = Dictionary(
            {
                PIECE_KEY: Dictionary(
                    LastModified=pikepdf.String(stamp), Private=Dictionary(LowConfidence=Array(doubtful))
                )
            }
        )
    pdf.pages.append(pikepdf.Page(page_dict))


# Words below this tesseract confidence are listed for the officer (wrong digits score 20-70).
LOW_WORD_CONF = 75.0
PIECE_KEY = "/ApplianceReview"


def _review_words(encoded: EncodedPage, ocr: OcrPage) -> list[Array]:
    clean_dpi = encoded.upsampled_from or encoded.dpi
    w_px = encoded.width_pt / 72.0 * clean_dpi
    h_px = encoded.height_pt / 72.0 * clean_dpi
    rows: list[Array] = []
    for word in ocr.words:
        if word.conf >= LOW_WORD_CONF or w_px <= 0 or h_px <= 0:
            continue
        x0, y0, x1, y1 = word.box
        box = [round(x0 / w_px, 4), round(y0 / h_px, 4), round(x1 / w_px, 4), round(y1 / h_px, 4)]
        rows.append(Array([pikepdf.String(word.text), round(word.conf, 1), *box]))
    return rows


def low_confidence_words(pdf: bytes | Path) -> list[ReviewWord]:
    """The words to check, page by page, read back from a PDF this module wrote (also once signed:
    signing appends, it does not rewrite the pages). Boxes are fractions of the page, top-left origin."""
    source = io.BytesIO(pdf) if isinstance(pdf, bytes) else pdf
    words: list[ReviewWord] = []
    try:
        with Pdf.open(source) as doc:
            for index, page in enumerate(doc.pages):
                piece = page.obj.get("/PieceInfo")
                data = piece.get(PIECE_KEY) if isinstance(piece, Dictionary) else None
                private = data.get("/Private") if isinstance(data, Dictionary) else None
                rows = private.get("/LowConfidence") if isinstance(private, Dictionary) else None
                for row in rows if isinstance(rows, Array) else []:
                    text, conf, x0, y0, x1, y1 = list(row)
                    box = (float(x0), float(y0), float(x1), float(y1))
                    words.append(ReviewWord(index, str(text), float(conf), box))
    except pikepdf.PdfError as err:
        raise PdfBuildFailed(f"cannot read review words: {err}") from err
    return words


def _image(pdf: Pdf, layer: ImageLayer) -> Stream:
    if layer.filter != "DCTDecode":
        raise ValueError(f"background must be a JPEG (DCTDecode), got {layer.filter}")
    return Stream(
        pdf,
        layer.data,
        Type=Name.XObject,
        Subtype=Name.Image,
        Width=layer.width,
        Height=layer.height,
        ColorSpace=Name.DeviceRGB if layer.colour else Name.DeviceGray,
        BitsPerComponent=8,
        Filter=Name.DCTDecode,
    )


def _stencil(pdf: Pdf, layer: ImageLayer) -> Stream:
    if layer.filter != "CCITTFaxDecode":
        raise ValueError(f"mask must be CCITT G4 (CCITTFaxDecode), got {layer.filter}")
    # G4 data codes ink as black runs; BlackIs1 false decodes black to 0, which the stencil
    # paints with the default /Decode [0 1].
    return Stream(
        pdf,
        layer.data,
        Type=Name.XObject,
        Subtype=Name.Image,
        Width=layer.width,
        Height=layer.height,
        ImageMask=True,
        BitsPerComponent=1,
        Filter=Name.CCITTFaxDecode,
        DecodeParms=Dictionary(K=-1, Columns=layer.width, Rows=layer.height, BlackIs1=False),
    )


def _text_form(pdf: Pdf, text_pdf: bytes, index: int) -> tuple[pikepdf.Object, tuple[float, ...]]:
    """The first page of tesseract's text-only PDF as a Form XObject of this PDF, and its box."""
    try:
        with Pdf.open(io.BytesIO(text_pdf)) as src:
            if len(src.pages) != 1:
                raise PdfBuildFailed(f"page {index + 1}: text layer has {len(src.pages)} pages, expected 1")
            src_page = src.pages[0]
            box = tuple(float(v) for v in src_page.mediabox)
            form = pdf.copy_foreign(src_page.as_form_xobject())
    except pikepdf.PdfError as err:
        raise PdfBuildFailed(f"page {index + 1}: unreadable text layer: {err}") from err
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise PdfBuildFailed(f"page {index + 1}: text layer has an empty page box")
    # PDF/A forbids transparency groups; tesseract does not emit one, but never carry it over.
    if Name.Group in form:
        del form[Name.Group]
    _close_gaps(form)
    return form, box


GLYPH_EM = 0.5  # tesseract's GlyphLessFont: every glyph is half an em wide (/DW 500)


def _close_gaps(form: pikepdf.Object) -> None:
    """Stretch each word's trailing space up to the next word of its line, in place.

    Tesseract writes every word (with a trailing space) at its own position, scaled to the word's
    width; in a justified line the gaps between words are wide, and text extractors (poppler's
    pdftotext, copy and paste) then split the line into columns and mix it with the next line. With
    the gaps closed the line reads as one run of text; the words stay where they are on the page.
    """
    try:
        ops = pikepdf.parse_content_stream(form)
    except pikepdf.PdfError:
        return
    out: list[tuple[list[Any], pikepdf.Operator]] = []
    size = 0.0
    pending: tuple[int, int] | None = None  # (index in out of the word's Tz, glyphs incl. the space)
    for instruction in ops:
        if not isinstance(instruction, pikepdf.ContentStreamInstruction):
            return  # an inline image: not tesseract's text layer, leave it alone
        op = instruction.operator
        name = str(op)
        args = list(instruction.operands)
        if name == "Tf" and len(args) == 2:
            size = float(args[1])
        elif name == "TJ" and args and isinstance(args[0], Array) and out and str(out[-1][1]) == "Tz":
            glyphs = sum(len(bytes(x)) // 2 for x in args[0] if isinstance(x, pikepdf.String))
            pending = (len(out) - 1, glyphs)
        elif name == "Td" and len(args) == 2 and pending is not None:
            dx, dy = float(args[0]), float(args[1])
            index, glyphs = pending
            if dy == 0 and dx > 0 and glyphs and size > 0:
                stretch = 100.0 * dx / (glyphs * GLYPH_EM * size)
                if stretch > float(out[index][0][0]):
                    out[index] = ([Decimal(f"{stretch:.3f}")], out[index][1])
            pending = None
        elif name in ("ET", "Tm", "T*", "BT"):
            pending = None
        out.append((args, op))
    form.write(pikepdf.unparse_content_stream(out))


# --- PDF/A ----------------------------------------------------------------------------------


def srgb_profile() -> bytes:
    """An sRGB ICC profile made by LittleCMS (through Pillow)."""
    return bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())


def _add_pdfa(pdf: Pdf, meta: DocumentMeta, npages: int) -> None:
    icc = Stream(pdf, srgb_profile(), N=3)
    pdf.Root.OutputIntents = Array(
        [
            Dictionary(
                Type=Name.OutputIntent,
                S=Name.GTS_PDFA1,
                OutputConditionIdentifier=pikepdf.String("sRGB"),
                Info=pikepdf.String("sRGB IEC61966-2.1"),
                RegistryName=pikepdf.String("http://www.color.org"),
                DestOutputProfile=icc,
            )
        ]
    )
    pdf.Root.Lang = pikepdf.String(meta.language)
    when = _parse_datetime(meta.digitized_at)
    issued = _valid_date(meta.issued)
    xmp = xmp_packet(meta, npages, when, issued)
    pdf.Root.Metadata = Stream(pdf, xmp, Type=Name.Metadata, Subtype=Name.XML)

    info = Dictionary(Producer=pikepdf.String(PRODUCER), Creator=pikepdf.String(CREATOR_TOOL))
    if meta.title:
        info.Title = pikepdf.String(meta.title)
    if meta.digitizer:
        info.Author = pikepdf.String(meta.digitizer)
    if when is not None:
        info.CreationDate = pikepdf.String(_pdf_date(when))
        info.ModDate = pikepdf.String(_pdf_date(when))
    pdf.trailer.Info = pdf.make_indirect(info)


def xmp_packet(meta: DocumentMeta, npages: int, when: datetime | None, issued: str | None) -> bytes:
    """The XMP packet (UTF-8) for the document. Unknown values are left out, never guessed."""
    props: list[str] = [
        "<pdfaid:part>2</pdfaid:part>",
        "<pdfaid:conformance>B</pdfaid:conformance>",
        "<dc:format>application/pdf</dc:format>",
    ]
    if meta.title:
        props.append(_container("dc:title", "Alt", meta.title, lang=True))
    if meta.doc_type:
        props.append(_container("dc:type", "Bag", meta.doc_type))
    if meta.number:
        props.append(f"<dc:identifier>{escape(meta.number)}</dc:identifier>")
    if issued:
        props.append(_container("dc:date", "Seq", issued))
    if meta.issuer:
        props.append(_container("dc:publisher", "Bag", meta.issuer))
    if meta.digitizer:
        props.append(_container("dc:creator", "Seq", meta.digitizer))
    if meta.language:
        props.append(_container("dc:language", "Bag", meta.language))
    if when is not None:
        stamp = when.isoformat()
        for tag in ("xmp:CreateDate", "xmp:ModifyDate", "xmp:MetadataDate"):
            props.append(f"<{tag}>{stamp}</{tag}>")
    props.append(f"<xmp:CreatorTool>{escape(CREATOR_TOOL)}</xmp:CreatorTool>")
    props.append(f"<pdf:Producer>{escape(PRODUCER)}</pdf:Producer>")
    props.append(f"<xmpTPg:NPages>{npages}</xmpTPg:NPages>")
    ns = "".join(f'\n    xmlns:{p}="{u}"' for p, u in _XMP_NS.items() if p not in ("x", "rdf"))
    body = "\n   ".join(props)
    text = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        f'<x:xmpmeta xmlns:x="{_XMP_NS["x"]}">\n'
        f' <rdf:RDF xmlns:rdf="{_XMP_NS["rdf"]}">\n'
        f'  <rdf:Description rdf:about=""{ns}>\n'
        f"   {body}\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n" + " " * 100 + "\n" + '<?xpacket end="w"?>'
    )
    return text.encode("utf-8")


def _container(tag: str, kind: str, value: str, lang: bool = False) -> str:
    attr = ' xml:lang="x-default"' if lang else ""
    return f"<{tag}><rdf:{kind}><rdf:li{attr}>{escape(value)}</rdf:li></rdf:{kind}></{tag}>"


def _parse_datetime(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(microsecond=0)
    except ValueError:
        log.warning("digitized_at is not an ISO 8601 date-time; left out of the metadata")
        return None


_ISO_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")


def _valid_date(value: str | None) -> str | None:
    """An XMP-valid date (YYYY, YYYY-MM or YYYY-MM-DD), or None."""
    if not value:
        return None
    if _ISO_DATE.fullmatch(value):
        try:
            if len(value) == 10:
                date.fromisoformat(value)
            return value
        except ValueError:
            pass
    log.warning("issued date is not an ISO date; left out of the metadata")
    return None


def _pdf_date(when: datetime) -> str:
    """PDF date string equal to the XMP date: D:YYYYMMDDHHmmSS with the same offset (if any)."""
    text = when.strftime("D:%Y%m%d%H%M%S")
    offset = when.utcoffset()
    if offset is None:
        return text
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{text}{sign}{minutes // 60:02d}'{minutes % 60:02d}'"


def _num(value: float) -> str:
    """A compact PDF number for content streams."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _dec(value: float) -> Decimal:
    return Decimal(_num(value))
