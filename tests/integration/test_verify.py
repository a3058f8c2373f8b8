"""`appliance verify`: each failure has its own reason; packages (ASiC-E) are checked end to end."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from appliance.sign import pades
from appliance.sign.batch import SignJob, sign_batch
from appliance.sign.package import MIMETYPE, PackageRequest, build_package, verify_package
from appliance.sign.verify import verify_pdf
from tests.integration.test_sign import run_cli
from tests.softhsm import (
    MODULE,
    OFFICER,
    ORGANISATION,
    CertSpec,
    SoftToken,
    issue,
    make_ca,
    simple_pdf,
)

pytestmark = [pytest.mark.pdftools, pytest.mark.slow]


@pytest.fixture(scope="module")
def signed(shared_token: SoftToken, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import os

    d = tmp_path_factory.mktemp("signed")
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(shared_token.conf)
    try:
        sign_batch(
            [SignJob(simple_pdf(d / "in.pdf"), d / "officer.pdf", "officer")],
            shared_token.pin,
            module=MODULE,
            serial=shared_token.serial,
        )
        sign_batch(
            [SignJob(d / "officer.pdf", d / "signed.pdf", "organisation")],
            shared_token.pin,
            module=MODULE,
            serial=shared_token.serial,
        )
    finally:
        if old is None:
            os.environ.pop("SOFTHSM2_CONF")
        else:
            os.environ["SOFTHSM2_CONF"] = old
    return d / "signed.pdf"


def codes(report: object) -> set[str]:
    return {p.code for p in report.all_problems}  # type: ignore[attr-defined]


def test_cli_verify_ok_and_json(signed: Path, shared_token: SoftToken) -> None:
    done = run_cli("verify", str(signed), "--trust", str(shared_token.ca.pem), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert out["ok"] is True
    assert [s["mark_position"] for s in out["signatures"]] == ["top-left", "top-right"]


def test_tampered_byte(signed: Path, shared_token: SoftToken, tmp_path: Path) -> None:
    data = bytearray(signed.read_bytes())
    data[300] ^= 0x01  # inside the signed range of both signatures
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(bytes(data))
    assert "tampered" in codes(verify_pdf(bytes(data), [shared_token.ca.pem]))
    done = run_cli("verify", str(bad), "--trust", str(shared_token.ca.pem))
    assert done.returncode == 1 and "tampered" in done.stdout


def test_appended_unsigned_bytes(signed: Path, shared_token: SoftToken) -> None:
    import pikepdf

    # a proper incremental update that adds content after the last signature
    buf = io.BytesIO(signed.read_bytes())
    with pikepdf.open(buf) as pdf:
        pdf.docinfo["/Title"] = "changed"
        out = io.BytesIO()
        pdf.save(out)  # full rewrite: breaks the byte ranges
    report = verify_pdf(out.getvalue(), [shared_token.ca.pem])
    assert not report.ok


def test_untrusted_root(signed: Path, tmp_path: Path) -> None:
    other = make_ca(tmp_path / "other", name="Some other CA")
    report = verify_pdf(signed.read_bytes(), [other.pem])
    assert codes(report) == {"untrusted"}


def _software_signer(cert_der: bytes, key: rsa.RSAPrivateKey, ca_der: bytes) -> object:
    from asn1crypto import keys, x509
    from pyhanko.sign import signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    return signers.SimpleSigner(
        signing_cert=x509.Certificate.load(cert_der),
        signing_key=keys.PrivateKeyInfo.load(
            key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        ),
        cert_registry=SimpleCertificateStore.from_certs([x509.Certificate.load(ca_der)]),
    )


def test_expired_certificate(shared_token: SoftToken, tmp_path: Path) -> None:
    from dataclasses import replace

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = issue(shared_token.ca, key.public_key(), replace(OFFICER, not_before_days=-400, not_after_days=-2))
    signer = _software_signer(
        cert.public_bytes(serialization.Encoding.DER),
        key,
        shared_token.ca.cert.public_bytes(serialization.Encoding.DER),
    )
    now = dt.datetime.now(dt.UTC)
    data = simple_pdf(tmp_path / "in.pdf").read_bytes()
    out = pades.sign_pdf(data, signer, pades.officer_mark("Ai Đó", now), when=now)
    report = verify_pdf(out.data, [shared_token.ca.pem])
    assert "certificate_expired" in codes(report)


def test_mark_rules(shared_token: SoftToken, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = issue(shared_token.ca, key.public_key(), OFFICER)
    signer = _software_signer(
        cert.public_bytes(serialization.Encoding.DER),
        key,
        shared_token.ca.cert.public_bytes(serialization.Encoding.DER),
    )
    now = dt.datetime.now(dt.UTC)
    data = simple_pdf(tmp_path / "in.pdf").read_bytes()
    # organisation text rules: an organisation-role signature whose text lacks the copy form and the note
    wrong_text = pades.Mark("organisation", ("Người số hóa: X", f"Thời gian: {pades.iso_vn(now)}"))
    report = verify_pdf(pades.sign_pdf(data, signer, wrong_text, when=now).data, [shared_token.ca.pem])
    assert codes(report) == {"mark_text_missing"}
    # position rule: an officer mark at the bottom of the page
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers

    out = io.BytesIO()
    signers.PdfSigner(
        signers.PdfSignatureMetadata(field_name="officer-1", subfilter=fields.SigSeedSubFilter.PADES),
        signer,
        stamp_style=pades._stamp_style(),
        new_field_spec=fields.SigFieldSpec("officer-1", on_page=0, box=(20, 20, 220, 60)),
    ).sign_pdf(
        IncrementalPdfFileWriter(io.BytesIO(data)),
        output=out,
        appearance_text_params={"mark": pades.officer_mark("X", now).text},
    )
    report = verify_pdf(out.getvalue(), [shared_token.ca.pem])
    assert codes(report) == {"mark_wrong_position"}


def test_unsigned_pdf(tmp_path: Path, shared_token: SoftToken) -> None:
    report = verify_pdf(simple_pdf(tmp_path / "plain.pdf").read_bytes(), [shared_token.ca.pem])
    assert not report.ok and codes(report) == {"no_signatures"}


# --- packages ---------------------------------------------------------------------------------
def test_package_build_and_verify(hsm: SoftToken, signed: Path, tmp_path: Path) -> None:
    pkg = tmp_path / "pkg.asice"
    fields = {
        "signed.pdf": {
            "number": "12",
            "symbol": "UBND-VP",
            "type": "Giấy xác nhận",
            "owner_id": "001203004005",
        }
    }
    info = build_package(
        PackageRequest(
            pdfs=(signed,),
            category="result",
            dossier_code="000.00.19.H12-230412-0007",
            tthc_code="1.000894",
            result_code="KQ.000.00.19.H12.000001",
            fields=fields,
            commune_code="19999",
            agency_code="000.00.19.H12",
        ),
        pkg,
        hsm.pin,
        module=MODULE,
        serial=hsm.serial,
    )
    with zipfile.ZipFile(pkg) as z:
        first = z.infolist()[0]
        assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
        assert z.read("mimetype") == MIMETYPE.encode()
        names = set(z.namelist())
        assert {
            "signed.pdf",
            "manifest.json",
            "META-INF/ASiCManifest.xml",
            "META-INF/signature001.p7s",
        } <= names
        manifest = json.loads(z.read("manifest.json"))
        assert b"manifest.json" in z.read("META-INF/ASiCManifest.xml")
    assert manifest["package_id"] == info.package_id and manifest["category"] == "result"
    doc = manifest["documents"][0]
    assert doc["pages"] == 1 and doc["fields"]["symbol"] == "UBND-VP" and len(doc["signatures"]) == 2
    assert manifest["result_code"] == "KQ.000.00.19.H12.000001"

    report = verify_package(pkg.read_bytes(), [hsm.ca.pem])
    assert report.ok, report.all_problems
    done = run_cli("verify", str(pkg), "--trust", str(hsm.ca.pem))
    assert done.returncode == 0, done.stdout

    # a changed PDF inside the package: wrong hash (and the PDF's own signatures break)
    tampered = tmp_path / "tampered.asice"
    with zipfile.ZipFile(pkg) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            blob = src.read(item)
            if item.filename == "signed.pdf":
                blob = blob[:300] + bytes([blob[300] ^ 1]) + blob[301:]
            dst.writestr(item, blob)
    found = codes(verify_package(tampered.read_bytes(), [hsm.ca.pem]))
    assert {"wrong_hash", "tampered"} <= found


def test_package_cli_build(hsm: SoftToken, signed: Path, tmp_path: Path) -> None:
    pkg = tmp_path / "cli.asice"
    done = run_cli(
        "package",
        "build",
        "--category",
        "component",
        "--dossier",
        "000.00.19.H12-230412-0007",
        str(signed),
        "-o",
        str(pkg),
        "--token",
        hsm.serial,
        "--role",
        "officer",
        "--json",
        pin=hsm.pin,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["package_id"]
    assert verify_package(pkg.read_bytes(), [hsm.ca.pem]).ok


# --- marks on rotated pages, text without /ActualText, timestamps ------------------------------------------
def _test_signer(ca_token: SoftToken, spec: CertSpec = OFFICER) -> object:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = issue(ca_token.ca, key.public_key(), spec)
    return _software_signer(
        cert.public_bytes(serialization.Encoding.DER),
        key,
        ca_token.ca.cert.public_bytes(serialization.Encoding.DER),
    )


def _ink_box(img: object, x0: int, y0: int, x1: int, y1: int) -> tuple[int, int, int, int] | None:
    """Bounding box (in the region's pixels) of dark pixels in a region of a rendered page."""
    import numpy as np

    grey = np.asarray(img.convert("L"))[y0:y1, x0:x1]  # type: ignore[attr-defined]
    ys, xs = np.nonzero(grey < 128)
    if not len(xs):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_marks_on_rotated_page(rotate: int, shared_token: SoftToken, nssdb: Path, tmp_path: Path) -> None:
    import pikepdf
    import pypdfium2

    from tests.integration.test_sign import pdfsig_ok
    from tests.softhsm import pdfsig

    # two certificates: poppler 22.12 reports "Unknown issue with Certificate" for the second of two
    # signatures made with one and the same certificate
    now = dt.datetime.now(dt.UTC)
    data = simple_pdf(tmp_path / "in.pdf", rotate=rotate).read_bytes()
    first = pades.sign_pdf(data, _test_signer(shared_token), pades.officer_mark("Ai Đó", now), when=now)
    second = pades.sign_pdf(
        first.data,
        _test_signer(shared_token, ORGANISATION),
        pades.organisation_mark("UBND xã Thử", "Ai Đó", now),
        when=now,
    )
    (tmp_path / "out.pdf").write_bytes(second.data)

    # the widget rectangles, in unrotated page space (A4 0 0 595.28 841.89), sit at the corner that the
    # reader sees as top-left (officer) / top-right (organisation) after turning the page clockwise
    w, h, m = 595.28, 841.89, pades.MARGIN
    expected = {  # (officer corner x, y), (organisation corner x, y) in user space
        90: ((0, 0), (0, h)),
        180: ((w, 0), (0, 0)),
        270: ((w, h), (w, 0)),
    }[rotate]
    for box, (cx, cy) in zip((first.box, second.box), expected, strict=True):
        near_x = box[0] if cx == 0 else w - box[2]
        near_y = box[1] if cy == 0 else h - box[3]
        assert near_x == pytest.approx(m) and near_y == pytest.approx(m), box
        if rotate in (90, 270):
            assert box[3] - box[1] > box[2] - box[0]  # lines run along the long edge of the unrotated box
    with pikepdf.open(tmp_path / "out.pdf") as pdf:
        for annot in pdf.pages[0].Annots:
            matrix = [float(v) for v in annot.AP.N.Matrix]
            assert matrix[:4] == [float(v) for v in pades.appearance_matrix(rotate)[:4]]

    report = verify_pdf(second.data, [shared_token.ca.pem])
    assert report.ok, report.all_problems
    assert [s.mark_position for s in report.signatures] == ["top-left", "top-right"]
    assert {s.page_rotate for s in report.signatures} == {rotate}
    pdfsig_ok(pdfsig(tmp_path / "out.pdf", nssdb), 2)

    # pdfium renders the page as the reader sees it: ink of both marks in the top corners, in horizontal
    # lines (wider than tall), nothing of them in the lower part of the page
    doc = pypdfium2.PdfDocument(second.data)
    doc.init_forms()
    img = doc[0].render(scale=1, may_draw_forms=True).to_pil()
    width, height = img.size
    assert (width > height) == (rotate in (90, 270))
    band = int(pades.MARGIN + 6 * pades.LEADING + 10)
    left = _ink_box(img, 0, 0, width // 2, band)
    right = _ink_box(img, width // 2, 0, width, band)
    assert left is not None and right is not None
    for x0, y0, x1, y1 in (left, right):
        assert x1 - x0 > 3 * (y1 - y0) * 0.5 and x1 - x0 > 100  # upright text lines, not a turned column
    assert left[0] < 40 and right[2] > width // 2 - 40  # hugging the left / right edge


def test_untrusted_timestamp(shared_token: SoftToken, tmp_path: Path) -> None:
    from tests.softhsm import tsa_server

    other = make_ca(tmp_path / "other", name="Unknown TSA CA")
    now = dt.datetime.now(dt.UTC)
    data = simple_pdf(tmp_path / "in.pdf").read_bytes()
    with tsa_server(other) as tsa:
        out = pades.sign_pdf(
            data, _test_signer(shared_token), pades.officer_mark("Ai Đó", now), when=now, tsa_url=tsa.url
        )
    assert out.level == "B-T"
    report = verify_pdf(out.data, [shared_token.ca.pem])
    assert codes(report) == {"bad_timestamp"}
    (check,) = report.signatures
    assert check.level == "B-T" and check.timestamp_ok is False


def test_unreachable_tsa_warns_and_signs_bb(
    shared_token: SoftToken, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from tests.softhsm import closed_port_url

    url = closed_port_url()
    now = dt.datetime.now(dt.UTC)
    data = simple_pdf(tmp_path / "in.pdf").read_bytes()
    with caplog.at_level(logging.WARNING, logger="appliance.sign.pades"):
        out = pades.sign_pdf(data, _test_signer(shared_token), pades.officer_mark("Ai Đó", now), when=now, tsa_url=url)
    assert out.level == "B-B"
    assert any(r.levelno == logging.WARNING and url in r.getMessage() for r in caplog.records)
    (check,) = verify_pdf(out.data, [shared_token.ca.pem]).signatures
    assert check.ok and check.level == "B-B"


def test_mark_text_without_actualtext_read_through_tounicode(shared_token: SoftToken, tmp_path: Path) -> None:
    """A mark drawn by software that writes no /ActualText: the text comes from the glyphs' ToUnicode map."""
    import dataclasses
    import subprocess

    import pikepdf
    from pyhanko.pdf_utils.font.opentype import GlyphAccumulator, GlyphAccumulatorFactory
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers

    class NoActualText(GlyphAccumulator):  # type: ignore[misc]
        def shape(self, txt: str, with_actual_text: bool = True) -> object:
            return super().shape(txt, with_actual_text=False)

    class NoActualTextFactory(GlyphAccumulatorFactory):  # type: ignore[misc]
        def create_font_engine(self, writer: object, obj_stream: object = None) -> GlyphAccumulator:
            return NoActualText(
                writer=writer,
                font_handle=Path(self.font_file).open("rb"),  # noqa: SIM115 - pyHanko closes it
                font_size=self.font_size,
            )

    base = pades._stamp_style()
    style = dataclasses.replace(
        base,
        text_box_style=dataclasses.replace(
            base.text_box_style, font=NoActualTextFactory(str(pades.font_file()), font_size=pades.FONT_SIZE)
        ),
    )
    now = dt.datetime.now(dt.UTC)
    mark = pades.organisation_mark("UBND xã Quảng Phú", "Nguyễn Thị Ánh", now)
    data = simple_pdf(tmp_path / "in.pdf").read_bytes()
    box = pades.mark_box((0, 0, 595.28, 841.89), mark)
    out = io.BytesIO()
    signers.PdfSigner(
        signers.PdfSignatureMetadata(field_name="organisation-1", subfilter=fields.SigSeedSubFilter.PADES),
        _test_signer(shared_token),
        stamp_style=style,
        new_field_spec=fields.SigFieldSpec("organisation-1", on_page=0, box=box),
    ).sign_pdf(IncrementalPdfFileWriter(io.BytesIO(data)), output=out, appearance_text_params={"mark": mark.text})
    signed = out.getvalue()
    with pikepdf.open(io.BytesIO(signed)) as pdf:
        (annot,) = pdf.pages[0].Annots
        appearance = annot.AP.N.read_bytes()
    assert b" TJ" in appearance and b"/ActualText" not in appearance

    report = verify_pdf(signed, [shared_token.ca.pem])
    assert report.ok, report.all_problems
    (check,) = report.signatures
    assert check.mark_text_source == "ToUnicode"
    assert check.mark_text.splitlines() == list(mark.lines)

    # poppler reads the same text from the widget's region (independent oracle; y from the top)
    (tmp_path / "s.pdf").write_bytes(signed)
    x, y = int(box[0]), int(841.89 - box[3])
    region = subprocess.run(
        ["pdftotext", "-f", "1", "-l", "1", "-r", "72", "-x", str(x), "-y", str(y),
         "-W", str(int(box[2] - box[0]) + 2), "-H", str(int(box[3] - box[1]) + 2), str(tmp_path / "s.pdf"), "-"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert [ln for ln in region.splitlines() if ln.strip()] == list(mark.lines)


def test_package_names_its_signer(hsm: SoftToken, signed: Path, tmp_path: Path) -> None:
    """manifest.json declares the package signer's certificate; verification holds the CAdES signer to it."""
    from cryptography.hazmat.primitives import hashes

    from appliance.errors import SignError
    from appliance.sign.batch import sign_detached
    from appliance.sign.package import ASIC_MANIFEST, MANIFEST, SIGNATURE, asic_manifest

    pkg = tmp_path / "pkg.asice"
    info = build_package(
        PackageRequest(pdfs=(signed,), category="component", dossier_code="D-1"),
        pkg,
        hsm.pin,
        module=MODULE,
        serial=hsm.serial,
    )
    org_sha = hsm.certs["organisation"].fingerprint(hashes.SHA256()).hex()
    officer_sha = hsm.certs["officer"].fingerprint(hashes.SHA256()).hex()
    assert info.manifest["package_signer"]["cert_sha256"] == org_sha == info.signer_sha256
    report = verify_package(pkg.read_bytes(), [hsm.ca.pem])
    assert report.ok, report.all_problems
    assert report.signer_cert_sha256 == org_sha

    # a validly signed package whose manifest names someone else (the officer) as its signer
    with zipfile.ZipFile(pkg) as z:
        files = {i.filename: z.read(i) for i in z.infolist()}
    manifest = json.loads(files[MANIFEST])
    manifest["package_signer"]["cert_sha256"] = officer_sha
    files[MANIFEST] = json.dumps(manifest, ensure_ascii=False).encode()
    files[ASIC_MANIFEST] = asic_manifest(
        {MANIFEST: (files[MANIFEST], "application/json"), "signed.pdf": (files["signed.pdf"], "application/pdf")}
    )
    files[SIGNATURE] = sign_detached(
        files[ASIC_MANIFEST], hsm.pin, role="organisation", module=MODULE, serial=hsm.serial
    ).der
    forged = tmp_path / "forged.asice"
    with zipfile.ZipFile(forged, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), MIMETYPE, compress_type=zipfile.ZIP_STORED)
        for name, blob in files.items():
            if name != "mimetype":
                z.writestr(name, blob)
    assert codes(verify_package(forged.read_bytes(), [hsm.ca.pem])) == {"signer_mismatch"}

    # the worker refuses to sign with a certificate other than the one the manifest names
    with pytest.raises(SignError, match="not the expected"):
        sign_detached(b"x", hsm.pin, role="organisation", module=MODULE, serial=hsm.serial, expect_sha256=officer_sha)
