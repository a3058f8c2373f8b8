"""Values that flow through the digitizing pipeline.

RawPage -> CleanPage -> (EncodedPage, OcrPage) -> PageResult -> Document

Every value is a frozen, slotted dataclass. Images are numpy uint8 arrays, either
grey (H, W) or RGB (H, W, 3) -- RGB order, never OpenCV's BGR outside an adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

PageImage: TypeAlias = npt.NDArray[np.uint8]


class Source(StrEnum):
    SCANNER = "scanner"
    CAMERA = "camera"
    FILE = "file"


class PageFlag(StrEnum):
    """Reasons to show a page to the officer. A flagged page is never dropped."""

    BLANK = "blank"
    BLURRED = "blurred"
    CUT_OFF = "cut_off"
    TOO_DARK = "too_dark"
    LOW_CONFIDENCE = "low_confidence"
    NO_PAGE_FOUND = "no_page_found"  # camera photo where no sheet outline was found
    GLARE = "glare"  # camera photo with a washed-out highlight (lamp reflection) over text
    CURLED = "curled"  # camera photo whose text lines bend (page curl): check the words near the bend


class Encoding(StrEnum):
    """How a page image is stored in the PDF."""

    MRC = "mrc"  # lossless CCITT G4 text mask over a low-resolution JPEG background
    JPEG = "jpeg"  # one full-resolution colour JPEG (photo-dominated pages)


@dataclass(frozen=True, slots=True)
class RawPage:
    """One captured physical page side, as the device or file gave it."""

    image: PageImage
    dpi: float
    source: Source
    original: str | None = None  # sha256 of the lossless original in the originals store
    label: str = ""  # where it came from, for messages: file name, "ADF 3", ...
    upright: bool = False  # an officer set this page's orientation: never turn it automatically


@dataclass(frozen=True, slots=True)
class CleanOptions:
    photo: bool | None = None  # None: decide from the source (camera -> photo path)
    fix_orientation: bool = True
    deskew: bool = True
    crop: bool = True


@dataclass(frozen=True, slots=True)
class CleanPage:
    image: PageImage  # upright, deskewed, cropped; grey or RGB
    dpi: float
    rotation: int  # 0, 90, 180 or 270: clockwise rotation applied to make it upright
    skew: float  # degrees of skew that were corrected
    flags: frozenset[PageFlag] = frozenset()
    colour: bool = False  # significant colour content (seal, signature, photo)
    perspective: bool = False  # a camera photo whose page outline was rectified
    # Grey copy for OCR (same size as ``image``): coloured ink (seals, signatures) lifted towards the
    # paper so only dark text remains, paper tint removed. None: OCR reads the grey of ``image``.
    ocr_image: PageImage | None = None


@dataclass(frozen=True, slots=True)
class EncodeOptions:
    background_dpi: float = 100.0
    jpeg_quality: int = 45
    min_dpi: float = 200.0  # rule: digitized pages are at least 200 dpi


@dataclass(frozen=True, slots=True)
class ImageLayer:
    """An image ready to embed in a PDF without re-encoding."""

    data: bytes
    width: int
    height: int
    filter: str  # "DCTDecode" or "CCITTFaxDecode"
    colour: bool  # RGB (True) or grey/bilevel (False)


@dataclass(frozen=True, slots=True)
class EncodedPage:
    encoding: Encoding
    width_pt: float
    height_pt: float
    dpi: float  # resolution of the full-resolution layer
    background: ImageLayer  # JPEG, colour or grey
    mask: ImageLayer | None = None  # CCITT G4 stencil of the text, painted black (MRC only)
    upsampled_from: float | None = None  # capture dpi when it was below min_dpi and `dpi` is interpolated

    @property
    def size(self) -> int:
        return len(self.background.data) + (len(self.mask.data) if self.mask else 0)


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    conf: float  # 0..100
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in clean-image pixels
    line: int  # running line number on the page, in reading order


@dataclass(frozen=True, slots=True)
class OcrPage:
    words: tuple[Word, ...]
    text: str  # NFC; lines joined with "\n", paragraphs separated by a blank line
    mean_conf: float  # 0..100, weighted by word length; 0 when no words
    text_pdf: bytes  # one-page PDF with only the invisible text layer, same page size


@dataclass(frozen=True, slots=True)
class QrCode:
    text: str
    box: tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class Field:
    name: str  # e.g. "so", "ky_hieu", "ngay_ban_hanh", "loai_van_ban", "co_quan_ban_hanh"
    value: str
    confidence: float  # 0..1
    source: str = "ocr"  # "ocr" or "qr" or "officer"
    valid: bool | None = None  # None when no validation rule applies
    problem: str | None = None  # error code when not valid (see errors.py / messages_vi.py)


@dataclass(frozen=True, slots=True)
class PageResult:
    """What is kept of a processed page: small values only, no full-resolution image."""

    index: int
    label: str
    dpi: float
    width: int  # clean image size in pixels
    height: int
    rotation: int
    skew: float
    flags: frozenset[PageFlag]
    colour: bool
    perspective: bool
    encoded: EncodedPage
    ocr: OcrPage
    qr: tuple[QrCode, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DocumentMeta:
    """What goes into XMP. Unknown values stay None, never guessed."""

    title: str | None = None  # trích yếu
    doc_type: str | None = None  # loại văn bản, e.g. "QUYẾT ĐỊNH"
    number: str | None = None  # số và ký hiệu, e.g. "38/QĐ-UBND"
    issued: str | None = None  # ISO date of issue
    issuer: str | None = None  # cơ quan ban hành
    digitizer: str | None = None  # the officer
    digitized_at: str | None = None  # ISO 8601 with offset
    language: str = "vi"


@dataclass(frozen=True, slots=True)
class ReviewWord:
    """A word the officer should check (low OCR confidence), as stored in the PDF for the review page."""

    page: int  # 0-based page index
    text: str
    conf: float  # 0..100
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the page (top-left origin)
