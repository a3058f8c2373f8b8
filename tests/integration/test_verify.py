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
