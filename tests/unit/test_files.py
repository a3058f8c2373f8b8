"""File import: real crafted files for every error case, images, PDFs and signed PDFs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pikepdf
import pytest
from PIL import Image

from appliance.capture.files import (
    DEFAULT_DPI,
    MAX_PIXELS,
    SignatureReport,
    inspect_pdf,
    load_file,
    validate_signatures,
)
from appliance.errors import (
    DecompressionBomb,
    EncryptedPdf,
    NoPages,
    NotAnImage,
    SignedPdf,
    UnreadableFile,
)
from appliance.messages_vi import MESSAGES_VI, message_for
from tests.faults import MARKER, bomb_png, signed_pdf, text_pdf


def gradient(w: int = 120, h: int = 80) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# --- error cases -------------------------------------------------------------------------------


def assert_vi(err: BaseException) -> None:
    assert message_for(err) == MESSAGES_VI[err.code]  # type: ignore[attr-defined]
    assert message_for(err) != MESSAGES_VI["unknown"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFile) as info:
        load_file(tmp_path / "nope.png")
    assert_vi(info.value)


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFile):
        load_file(tmp_path)


def test_truncated_png(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(gradient(400, 300)).save(good)
    data = good.read_bytes()
    bad = tmp_path / "cut.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableFile) as info:
        load_file(bad)
    assert_vi(info.value)


def test_text_file_renamed_jpg(tmp_path: Path) -> None:
    p = tmp_path / "scan.jpg"
    p.write_text("Đây không phải là ảnh\n", encoding="utf-8")
    with pytest.raises(NotAnImage) as info:
        load_file(p)
    assert_vi(info.value)


def test_decompression_bomb(tmp_path: Path) -> None:
    p = bomb_png(tmp_path / "bomb.png")
    assert p.stat().st_size < 10_000
    with pytest.raises(DecompressionBomb) as info:
        load_file(p)
    assert_vi(info.value)


def test_bomb_just_over_our_limit(tmp_path: Path) -> None:
    # over MAX_PIXELS but under Pillow's hard error (2x): caught via the warning / our own check
    side = int((MAX_PIXELS * 1.2) ** 0.5)
    with pytest.raises(DecompressionBomb):
        load_file(bomb_png(tmp_path / "big.png", side))


def test_empty_pdf(tmp_path: Path) -> None:
    p = tmp_path / "empty.pdf"
    pikepdf.new().save(p)
    assert inspect_pdf(p).pages == 0
    with pytest.raises(NoPages) as info:
        load_file(p)
    assert_vi(info.value)


def test_encrypted_pdf(tmp_path: Path) -> None:
    src = text_pdf(tmp_path / "plain.pdf")
    p = tmp_path / "locked.pdf"
    with pikepdf.open(src) as pdf:
        pdf.save(p, encryption=pikepdf.Encryption(user="matkhau", owner="chu", R=6))
    with pytest.raises(EncryptedPdf) as info:
        load_file(p)
    assert_vi(info.value)
    with pytest.raises(EncryptedPdf):
        inspect_pdf(p)


def test_garbage_pdf(tmp_path: Path) -> None:
    p = tmp_path / "broken.pdf"
    p.write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 50)
    with pytest.raises((UnreadableFile, NoPages)):
        load_file(p)


# --- images ---------------------------------------------------------------------------------------


def test_png_round_trip_with_dpi(tmp_path: Path) -> None:
    arr = gradient()
    p = tmp_path / "page.png"
    Image.fromarray(arr).save(p, dpi=(150, 150))
    (page,) = load_file(p)
    assert page.dpi == 150.0
    assert np.array_equal(page.image, arr)
    assert page.source == "file"
    assert page.label == "page.png"


def test_dpi_default_when_absent_or_absurd(tmp_path: Path) -> None:
    p = tmp_path / "nodpi.png"
    Image.fromarray(gradient()).save(p)
    assert load_file(p)[0].dpi == DEFAULT_DPI
    q = tmp_path / "absurd.jpg"
    Image.fromarray(gradient()).save(q, dpi=(1, 1))
    assert load_file(q)[0].dpi == DEFAULT_DPI


def test_jpeg_dpi_and_grey(tmp_path: Path) -> None:
    p = tmp_path / "grey.jpg"
    Image.fromarray(gradient()[:, :, 0]).save(p, dpi=(200, 200), quality=95)
    (page,) = load_file(p)
    assert page.dpi == 200.0
    assert page.image.ndim == 2 and page.image.dtype == np.uint8


def test_exif_orientation_applied(tmp_path: Path) -> None:
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)  # left half red
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display = rotate 90 degrees clockwise
    p = tmp_path / "phone.jpg"
    img.save(p, exif=exif, quality=95)
    (page,) = load_file(p)
    assert page.image.shape == (40, 20, 3)
    # after a clockwise turn the red (former left) half is on top
    assert page.image[5, 10, 0] > 200 and page.image[35, 10, 0] < 60


def test_multipage_tiff(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((60, 50), v, np.uint8)) for v in (10, 120, 250)]
    p = tmp_path / "stack.tif"
    frames[0].save(p, save_all=True, append_images=frames[1:], dpi=(240, 240), compression="tiff_lzw")
    pages = load_file(p)
    assert len(pages) == 3
    assert [int(pg.image[0, 0]) for pg in pages] == [10, 120, 250]
    assert all(pg.dpi == 240.0 for pg in pages)
    assert [pg.label for pg in pages] == ["stack.tif [1]", "stack.tif [2]", "stack.tif [3]"]


def test_bilevel_and_alpha_images(tmp_path: Path) -> None:
    bw = tmp_path / "bw.tif"
    Image.fromarray((gradient()[:, :, 0] > 128).astype(np.uint8) * 255).convert("1").save(bw, compression="group4")
    (page,) = load_file(bw)
    assert page.image.ndim == 2 and set(np.unique(page.image).tolist()) <= {0, 255}
    rgba = np.zeros((10, 10, 4), np.uint8)  # fully transparent -> white paper
    p = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(p)
    (page,) = load_file(p)
    assert page.image.shape == (10, 10, 3) and int(page.image.min()) == 255


# --- PDFs -----------------------------------------------------------------------------------------


def test_pdf_rendered_at_300dpi(tmp_path: Path) -> None:
    p = text_pdf(tmp_path / "three.pdf", pages=3)
    info = inspect_pdf(p)
    assert info.pages == 3 and not info.signed
    pages = load_file(p)
    assert len(pages) == 3
    for page in pages:
        assert page.dpi == 300.0
        h, w = page.image.shape[:2]
        assert abs(w - 2480) <= 2 and abs(h - 3508) <= 2
        assert int(page.image.min()) < 50  # the text was painted


def test_pdf_of_scanned_images_taken_at_native_resolution(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:420, 0:300]
    smooth = np.stack([xx * 255 // 299, yy * 255 // 419, np.full_like(xx, 90)], axis=2).astype(np.uint8)
    arrs = [smooth, smooth[::-1].copy()]
    p = tmp_path / "scans.pdf"
    imgs = [Image.fromarray(a) for a in arrs]
    imgs[0].save(p, save_all=True, append_images=imgs[1:], resolution=150.0)
    pages = load_file(p)
    assert len(pages) == 2
    for page, arr in zip(pages, arrs, strict=True):
        assert page.image.shape == arr.shape  # not re-rendered at 300 dpi
        assert abs(page.dpi - 150.0) < 0.5
        # Pillow stores RGB as JPEG; close to the source, not a re-render
        assert float(np.abs(page.image.astype(int) - arr.astype(int)).mean()) < 4


# --- signed PDFs ----------------------------------------------------------------------------------


def test_signed_pdf_detected_and_intact(tmp_path: Path) -> None:
    signed, cert = signed_pdf(tmp_path)
    before = signed.read_bytes()
    info = inspect_pdf(signed)
    assert info.signed and info.signature_fields == ("Signature1",)
    assert not inspect_pdf(tmp_path / "plain.pdf").signed

    with pytest.raises(SignedPdf) as err:
        load_file(signed)
    assert_vi(err.value)

    (report,) = validate_signatures(signed)
    assert isinstance(report, SignatureReport)
    assert report.intact and report.valid
    assert report.trusted == "unknown"
    assert "Nguyễn Văn An" in report.signer
    assert report.coverage == "entire_file" and report.whole_file
    assert report.signing_time is not None and report.signing_time.startswith(str(dt.date.today().year))

    (trusted,) = validate_signatures(signed, trust_roots=[cert])
    assert trusted.trusted == "yes"
    (by_bytes,) = validate_signatures(signed, trust_roots=[cert.read_bytes()])
    assert by_bytes.trusted == "yes"

    assert signed.read_bytes() == before  # never modified


def test_flipped_byte_reports_not_intact(tmp_path: Path) -> None:
    signed, _ = signed_pdf(tmp_path)
    data = bytearray(signed.read_bytes())
    at = data.index(MARKER)
    data[at] ^= 0x01  # 'H' -> 'I' inside the signed range
    tampered = tmp_path / "tampered.pdf"
    tampered.write_bytes(bytes(data))
    (report,) = validate_signatures(tampered)
    assert not report.intact
    assert report.field == "Signature1"


def test_appended_update_is_not_whole_file(tmp_path: Path) -> None:
    from pyhanko.pdf_utils.generic import NameObject, TextStringObject
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    signed, _ = signed_pdf(tmp_path)
    out = tmp_path / "updated.pdf"
    with signed.open("rb") as f, out.open("wb") as o:
        w = IncrementalPdfFileWriter(f)
        w.root[NameObject("/Lang")] = TextStringObject("vi")
        w.update_root()
        w.write(o)
    (report,) = validate_signatures(out)
    assert report.intact
    assert not report.whole_file


def test_a_png_with_pdf_text_in_a_chunk_is_read_as_an_image(tmp_path: Path) -> None:
    """A tEXt chunk holding "%PDF-" within the first KB once made the file be taken for a PDF."""
    from PIL import Image, PngImagePlugin

    from appliance.capture import files

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "%PDF-1.7 not a PDF at all")
    path = tmp_path / "trang.png"
    Image.new("L", (200, 300), 255).save(path, pnginfo=info)
    assert b"%PDF-" in path.read_bytes()[:1024]
    files.probe(path)
    pages = files.load_file(path)
    assert len(pages) == 1 and pages[0].image.shape[:2] == (300, 200)
