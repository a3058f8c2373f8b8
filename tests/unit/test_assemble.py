"""assemble(): PDF/A-2b from encoded pages + tesseract text layers, checked with real PDF tools.

Three corpus pages: a 300 dpi grey text page (MRC), a 200 dpi colour page with a red seal and a
blue signature (MRC, colour background) and a photo page (one JPEG). Text layers come from real
tesseract (`-c textonly_pdf=1`), as the pipeline's ocr step makes them.
"""

from __future__ import annotations

import io
import re
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pikepdf
import pytest
from PIL import Image

from appliance.assemble import assemble
from appliance.encode import encode
from appliance.errors import NoPages, PdfBuildFailed
from appliance.model import CleanPage, DocumentMeta, EncodedPage, Encoding, OcrPage
from bench.corpus import cer_unordered, normalise, render_page
from tests.conftest import need

META = DocumentMeta(
    title="Quyết định về việc cấp giấy chứng nhận quyền sử dụng đất cho hộ ông Nguyễn Văn Thưởng",
    doc_type="QUYẾT ĐỊNH",
    number="38/QĐ-UBND",
    issued="2023-04-12",
    issuer="Ủy ban nhân dân xã Hải Phú",
    digitizer="Trần Thị Hạnh",
    digitized_at="2025-07-01T09:30:15+07:00",
)


pytestmark = pytest.mark.slow  # full A4 corpus pages (~1 s each to render)


@dataclass(frozen=True)
class Item:
    image: np.ndarray
    dpi: int
    truth: str
    encoded: EncodedPage
    ocr: OcrPage


def photo_page(dpi: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    base, _ = render_page(seed=5, dpi=dpi)
    base = base.copy()
    h, w = base.shape[:2]
    field = cv2.resize(rng.uniform(30, 220, (12, 9, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    photo = np.clip(field + rng.normal(0, 6, (h, w, 1)), 0, 255).astype(np.uint8)
    base[h // 5 : h * 9 // 10, w // 10 : w * 9 // 10] = photo[h // 5 : h * 9 // 10, w // 10 : w * 9 // 10]
    return base


def text_layers(tesseract: str, images: list[tuple[np.ndarray, int]], tmp: Path) -> list[bytes]:
    """Run tesseract on each page (in parallel) for its text-only PDF layer."""
    procs = []
    for i, (image, dpi) in enumerate(images):
        png = tmp / f"p{i}.png"
        Image.fromarray(image).save(png)
        cmd = [tesseract, str(png), str(tmp / f"t{i}"), "-l", "vie", "--dpi", str(dpi)]
        procs.append(subprocess.Popen([*cmd, "-c", "textonly_pdf=1", "pdf"], stderr=subprocess.PIPE))
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read() if p.stderr else ""
    return [(tmp / f"t{i}.pdf").read_bytes() for i in range(len(images))]


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory) -> list[Item]:
    need("tesseract")
    tmp = tmp_path_factory.mktemp("assemble")
    grey, grey_text = render_page(seed=0, dpi=300)
    grey = cv2.cvtColor(grey, cv2.COLOR_RGB2GRAY)
    seal, seal_text = render_page(seed=1, dpi=200, colour=True, seal=True)
    photo = photo_page(200)
    pages = [(grey, 300, grey_text, False), (seal, 200, seal_text, True), (photo, 200, "", True)]
    layers = text_layers("tesseract", [(img, dpi) for img, dpi, _, _ in pages], tmp)
    out = []
    for (img, dpi, truth, colour), layer in zip(pages, layers, strict=True):
        enc = encode(CleanPage(image=img, dpi=dpi, rotation=0, skew=0.0, colour=colour))
        out.append(Item(img, dpi, truth, enc, OcrPage(words=(), text="", mean_conf=0.0, text_pdf=layer)))
    return out


@pytest.fixture(scope="module")
def pdf_file(items: list[Item], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pdf") / "doc.pdf"
    path.write_bytes(assemble([(it.encoded, it.ocr) for it in items], META))
    return path


def run(*cmd: str) -> str:
    need(cmd[0])
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def decoded_mask(stream: pikepdf.Object) -> np.ndarray:
    """pikepdf's decoding of an /ImageMask stream: True where the stencil paints.

    PdfImage does not decode stencils, so the (never saved) stream is turned into a 1-bit
    DeviceGray image in memory first: 0 = black = painted.
    """
    del stream.ImageMask
    stream.ColorSpace = pikepdf.Name.DeviceGray
    return np.asarray(pikepdf.PdfImage(stream).as_pil_image().convert("L")) < 128


# --- structure ----------------------------------------------------------------------------


@pytest.mark.tesseract
@pytest.mark.pdftools
def test_qpdf_check_passes(pdf_file: Path) -> None:
    out = run("qpdf", "--check", str(pdf_file))
    assert "No syntax or stream encoding errors" in out


@pytest.mark.tesseract
@pytest.mark.pdftools
def test_pages_sizes_and_layers(pdf_file: Path, items: list[Item]) -> None:
    info = run("pdfinfo", str(pdf_file))
    assert re.search(r"^Pages:\s+3$", info, re.M)
    assert re.search(r"^Encrypted:\s+no$", info, re.M)
    assert re.search(r"^PDF version:\s+1\.7$", info, re.M)
    listing = run("pdfimages", "-list", str(pdf_file)).splitlines()[2:]
    rows = [line.split() for line in listing]
    # page num type width height color comp bpc enc interp object id x-ppi y-ppi size ratio
    by_page: dict[int, list[list[str]]] = {}
    for r in rows:
        by_page.setdefault(int(r[0]), []).append(r)
    for n, it in enumerate(items, 1):
        got = by_page[n]
        if it.encoded.encoding is Encoding.MRC:
            assert len(got) == 2
            bg, mask = got
            assert bg[2] == "image" and bg[8] == "jpeg" and int(bg[12]) == pytest.approx(100, abs=1)
            assert bg[5] == ("rgb" if it.encoded.background.colour else "gray")
            assert mask[2] == "stencil" and mask[7] == "1" and mask[8] == "ccitt"
            assert (int(mask[3]), int(mask[4])) == (it.image.shape[1], it.image.shape[0])
            assert int(mask[12]) == it.dpi
        else:
            assert len(got) == 1 and got[0][8] == "jpeg" and got[0][5] == "rgb"
            assert int(got[0][12]) == 200
    with pikepdf.open(pdf_file) as pdf:
        for page, it in zip(pdf.pages, items, strict=True):
            box = [float(v) for v in page.mediabox]
            assert box == pytest.approx([0, 0, it.encoded.width_pt, it.encoded.height_pt], abs=0.01)


@pytest.mark.tesseract
@pytest.mark.pdftools
def test_text_layer_gives_back_the_vietnamese_text_in_page_order(pdf_file: Path, items: list[Item]) -> None:
    for n, it in enumerate(items, 1):
        text = run("pdftotext", "-f", str(n), "-l", str(n), "-layout", str(pdf_file), "-")
        if it.truth:
            err = cer_unordered(it.truth, text)
            print(f"page {n}: cer_unordered {err:.4f}")
            assert err <= 0.05, text[:300]
    # the pages are in order: page 1 reads like page 1's truth, not like page 2's
    p1 = run("pdftotext", "-f", "1", "-l", "1", str(pdf_file), "-")
    assert cer_unordered(items[0].truth, p1) < cer_unordered(items[1].truth, p1)
    assert "Ủy" in p1 or "ỦY" in p1 or "ủy" in normalise(p1).lower()


@pytest.mark.tesseract
@pytest.mark.pdftools
def test_text_layer_is_the_same_as_tesseracts(pdf_file: Path, items: list[Item], tmp_path: Path) -> None:
    layer = tmp_path / "layer.pdf"
    layer.write_bytes(items[0].ocr.text_pdf)
    ours = run("pdftotext", "-f", "1", "-l", "1", str(pdf_file), "-")
    theirs = run("pdftotext", str(layer), "-")
    # the same words; lines may read better than tesseract's own layer (gaps closed, see _close_gaps)
    assert normalise(ours) and sorted(normalise(ours).split()) == sorted(normalise(theirs).split())
    assert cer_unordered(items[0].truth, ours) <= cer_unordered(items[0].truth, theirs)


@pytest.mark.tesseract
@pytest.mark.pdftools
def test_fonts_are_embedded(pdf_file: Path) -> None:
    rows = run("pdffonts", str(pdf_file)).splitlines()[2:]
    assert rows, "expected the GlyphLessFont of the text layer"
    for row in rows:
        # name type(2 words) encoding emb sub uni id gen
        assert row.split()[-5] == "yes", row


# --- image layers survive byte for byte ---------------------------------------------------


@pytest.mark.tesseract
def test_mask_in_the_pdf_is_the_encoded_mask_losslessly(pdf_file: Path, items: list[Item]) -> None:
    with pikepdf.open(pdf_file) as pdf:
        for page, it in zip(pdf.pages, items, strict=True):
            xobjects = page.Resources.XObject
            assert xobjects.Bg.read_raw_bytes() == it.encoded.background.data
            if it.encoded.mask is None:
                assert "/Mask" not in xobjects
                continue
            stream = xobjects.Mask
            assert stream.ImageMask is True
            assert stream.read_raw_bytes() == it.encoded.mask.data
            mask = decoded_mask(stream)
            grey = it.image if it.image.ndim == 2 else cv2.cvtColor(it.image, cv2.COLOR_RGB2GRAY)
            truth = grey < 100
            assert (mask & truth).sum() / truth.sum() > 0.97


@pytest.mark.tesseract
@pytest.mark.pdftools
def test_poppler_paints_exactly_the_mask(pdf_file: Path, items: list[Item], tmp_path: Path) -> None:
    """Rendered at its own 300 dpi by an independent decoder, page 1's ink is the mask, pixel for pixel."""
    need("pdftoppm")
    run("pdftoppm", "-r", "300", "-f", "1", "-l", "1", "-gray", "-aa", "no", "-aaVector", "no",
        str(pdf_file), str(tmp_path / "r"))  # fmt: skip
    rendered = np.asarray(Image.open(next(tmp_path.glob("r*.pgm"))))
    with pikepdf.open(pdf_file) as pdf:
        mask = decoded_mask(pdf.pages[0].Resources.XObject.Mask)
    assert rendered.shape == mask.shape
    assert np.array_equal(rendered < 128, mask)


@pytest.mark.tesseract
def test_red_seal_is_still_red_in_the_pdf(pdf_file: Path, items: list[Item]) -> None:
    image = items[1].image
    with pikepdf.open(pdf_file) as pdf:
        bg = np.asarray(pikepdf.PdfImage(pdf.pages[1].Resources.XObject.Bg).as_pil_image())
    assert bg.ndim == 3
    r, g, b = (image[..., i].astype(np.int16) for i in range(3))
    seal = ((r - np.maximum(g, b) > 80) & (r > 120)).astype(np.uint8) * 255
    cells = cv2.resize(seal, (bg.shape[1], bg.shape[0]), interpolation=cv2.INTER_AREA) > 160
    assert cells.sum() > 50
    hsv = cv2.cvtColor(bg, cv2.COLOR_RGB2HSV)
    hue, sat = hsv[..., 0][cells].astype(int), hsv[..., 1][cells]
    red = ((hue <= 10) | (hue >= 170)) & (sat > 60)
    print(f"seal cells: {red.mean():.3f} red, median saturation {np.median(sat)}")
    assert red.mean() > 0.9
    assert np.median(sat) > 100


# --- PDF/A metadata -----------------------------------------------------------------------


@pytest.mark.tesseract
def test_pdfa_metadata_and_docinfo(pdf_file: Path) -> None:
    with pikepdf.open(pdf_file) as pdf:
        meta = pdf.open_metadata()
        assert meta["pdfaid:part"] == "2"
        assert meta["pdfaid:conformance"] == "B"
        assert meta["dc:title"] == META.title
        assert meta["dc:identifier"] == "38/QĐ-UBND"
        assert meta["dc:type"] == {"QUYẾT ĐỊNH"}
        assert meta["dc:publisher"] == {"Ủy ban nhân dân xã Hải Phú"}
        assert meta["dc:creator"] == ["Trần Thị Hạnh"]
        assert meta["dc:date"] == ["2023-04-12"]
        assert meta["dc:language"] == {"vi"}
        assert meta["xmp:CreateDate"] == "2025-07-01T09:30:15+07:00"
        assert meta["xmp:ModifyDate"] == meta["xmp:MetadataDate"] == meta["xmp:CreateDate"]
        assert meta["{http://ns.adobe.com/xap/1.0/t/pg/}NPages"] == "3"
        assert meta["pdf:Producer"] == str(pdf.docinfo.Producer)
        info = pdf.docinfo
        assert str(info.Title) == META.title
        assert str(info.Author) == "Trần Thị Hạnh"
        assert str(info.CreationDate) == "D:20250701093015+07'00'"
        # output intent with an embedded sRGB profile
        (intent,) = pdf.Root.OutputIntents
        assert intent.S == pikepdf.Name.GTS_PDFA1
        icc = intent.DestOutputProfile.read_bytes()
        assert intent.DestOutputProfile.N == 3 and icc[36:40] == b"acsp" and icc[16:20] == b"RGB "
        assert pdf.Root.Metadata.get("/Filter") is None  # XMP stays readable without decoding
        assert len(pdf.trailer.ID) == 2 and len(bytes(pdf.trailer.ID[0])) == 16
        assert not pdf.is_encrypted
        assert str(pdf.Root.Lang) == "vi"


@pytest.mark.tesseract
def test_no_transparency_anywhere(pdf_file: Path) -> None:
    with pikepdf.open(pdf_file) as pdf:
        for obj in pdf.objects:
            if isinstance(obj, (pikepdf.Dictionary, pikepdf.Stream)):
                d = obj.stream_dict if isinstance(obj, pikepdf.Stream) else obj
                assert "/Group" not in d and "/SMask" not in d
                assert d.get("/Interpolate") is not True


@pytest.mark.tesseract
def test_vietnamese_title_round_trips_through_pdfinfo(pdf_file: Path) -> None:
    info = run("pdfinfo", str(pdf_file))
    assert f"Title:           {META.title}" in info
    assert "Author:          Trần Thị Hạnh" in info


# --- without OCR, sizes, determinism, errors ----------------------------------------------


def single(image: np.ndarray, dpi: int, colour: bool) -> tuple[EncodedPage, OcrPage]:
    enc = encode(CleanPage(image=image, dpi=dpi, rotation=0, skew=0.0, colour=colour))
    return enc, OcrPage(words=(), text="", mean_conf=0.0, text_pdf=b"")


@pytest.fixture(scope="module")
def untexted() -> list[tuple[EncodedPage, OcrPage]]:
    grey, _ = render_page(seed=2, dpi=300)
    seal, _ = render_page(seed=3, dpi=200, colour=True, seal=True)
    return [single(cv2.cvtColor(grey, cv2.COLOR_RGB2GRAY), 300, False), single(seal, 200, True)]


@pytest.mark.pdftools
def test_page_without_ocr_has_no_text_layer(untexted: list[tuple[EncodedPage, OcrPage]], tmp_path: Path) -> None:
    path = tmp_path / "plain.pdf"
    path.write_bytes(assemble(untexted, DocumentMeta()))
    assert "No syntax or stream encoding errors" in run("qpdf", "--check", str(path))
    assert normalise(run("pdftotext", str(path), "-")) == ""
    assert run("pdffonts", str(path)).splitlines()[2:] == []
    with pikepdf.open(path) as pdf:
        assert len(pdf.pages) == 2
        assert "/Text" not in pdf.pages[0].Resources.XObject
        meta = pdf.open_metadata()
        assert meta["pdfaid:part"] == "2" and "dc:title" not in meta  # unknown stays unknown


def test_one_page_pdfs_are_under_the_size_targets(untexted: list[tuple[EncodedPage, OcrPage]]) -> None:
    grey = assemble([untexted[0]], META)
    seal = assemble([untexted[1]], META)
    print(f"1-page PDF/A: 300 dpi grey {len(grey)} B, 200 dpi colour+seal {len(seal)} B")
    assert len(grey) <= 100 * 1024
    assert len(seal) <= 150 * 1024


def test_same_input_gives_the_same_bytes(untexted: list[tuple[EncodedPage, OcrPage]]) -> None:
    assert assemble(untexted, META) == assemble(untexted, META)
    assert assemble(untexted, META) != assemble(untexted, replace(META, title="Khác"))


def test_errors() -> None:
    with pytest.raises(NoPages):
        assemble([], META)
    enc = encode(CleanPage(image=np.full((400, 300), 255, np.uint8), dpi=200, rotation=0, skew=0.0))
    with pytest.raises(PdfBuildFailed):
        assemble([(enc, OcrPage(words=(), text="", mean_conf=0.0, text_pdf=b"not a pdf"))], META)


def test_bad_dates_are_left_out_not_guessed() -> None:
    enc = encode(CleanPage(image=np.full((400, 300), 255, np.uint8), dpi=200, rotation=0, skew=0.0))
    data = assemble([(enc, OcrPage((), "", 0.0, b""))], replace(META, issued="12/04/2023", digitized_at="hôm qua"))
    with pikepdf.open(io.BytesIO(data)) as pdf:
        meta = pdf.open_metadata()
        assert "dc:date" not in meta and "xmp:CreateDate" not in meta
        assert "/CreationDate" not in pdf.docinfo


def test_low_confidence_words_travel_in_the_pdf() -> None:
    from appliance.assemble import LOW_WORD_CONF, low_confidence_words
    from appliance.model import Word

    enc, ocr_page = single(np.full((600, 500), 255, np.uint8), 300, False)
    words = (
        Word("Số:", 96.0, (100, 100, 160, 130), 0),
        Word("38/QĐ-UBND", 41.5, (170, 100, 400, 130), 0),
        Word("ngày", 74.0, (100, 200, 180, 230), 1),
    )
    doubtful = replace(ocr_page, words=words)
    pdf = assemble([(enc, ocr_page), (enc, doubtful)], DocumentMeta())
    found = low_confidence_words(pdf)
    assert [(w.page, w.text) for w in found] == [(1, "38/QĐ-UBND"), (1, "ngày")]
    assert all(w.conf < LOW_WORD_CONF for w in found)
    w_px = enc.width_pt / 72 * (enc.upsampled_from or enc.dpi)
    assert found[0].box[0] == pytest.approx(170 / w_px, abs=1e-3)
    assert 0 < found[0].box[1] < found[0].box[3] < 1
