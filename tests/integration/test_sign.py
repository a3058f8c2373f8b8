"""Signing with a real SoftHSM2 token: PAdES marks per role, checked by pyHanko and by poppler's pdfsig."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pikepdf
import pytest

from appliance.sign.batch import SignJob, sign_batch, token_status
from appliance.sign.verify import verify_pdf
from tests.softhsm import (
    MODULE,
    OFFICER_NAME,
    ORG_NAME,
    SoftToken,
    pdfsig,
    simple_pdf,
)

pytestmark = [pytest.mark.pdftools, pytest.mark.slow]


def run_cli(*args: str, pin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        input=(pin + "\n") if pin is not None else "",
        capture_output=True,
        text=True,
        env=env or dict(os.environ),
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )


def pdfsig_ok(report: str, count: int) -> None:
    assert report.count("Signature is Valid") == count, report
    assert report.count("Certificate is Trusted") == count, report
    assert "Digest Mismatch" not in report


def test_sign_officer_cli_keeps_pdfa_and_verifies(hsm: SoftToken, nssdb: Path, tmp_path: Path) -> None:
    src = simple_pdf(tmp_path / "in.pdf")
    out = tmp_path / "out.pdf"
    done = run_cli(
        "sign",
        str(src),
        "-o",
        str(out),
        "--role",
        "officer",
        "--token",
        hsm.serial,
        "--module",
        str(MODULE),
        pin=hsm.pin,
    )
    assert done.returncode == 0, done.stderr
    original, signed = src.read_bytes(), out.read_bytes()
    assert signed.startswith(original) and len(signed) > len(original)  # incremental update
    with pikepdf.open(io.BytesIO(signed)) as pdf, pdf.open_metadata() as meta:
        assert meta.get("pdfaid:part") == "2" and meta.get("pdfaid:conformance") == "B"

    report = verify_pdf(signed, [hsm.ca.pem])
    assert report.ok, report.all_problems
    (sig,) = report.signatures
    assert sig.role == "officer" and sig.mark_position == "top-left" and sig.mark_page == 0
    assert f"Người số hóa: {OFFICER_NAME}" in sig.mark_text
    assert "+07:00" in sig.mark_text
    assert sig.mark_rect is not None and sig.mark_rect[0] < 100 and sig.mark_rect[3] > 780
    assert sig.coverage == "ENTIRE_FILE"

    text = pdfsig(out, nssdb)
    pdfsig_ok(text, 1)
    assert "Total document signed" in text and "ETSI.CAdES.detached" in text


def test_sign_organisation_over_officer(hsm: SoftToken, nssdb: Path, tmp_path: Path) -> None:
    src = simple_pdf(tmp_path / "in.pdf")
    first, second = tmp_path / "officer.pdf", tmp_path / "copy.pdf"
    sign_batch([SignJob(src, first, "officer")], hsm.pin, module=MODULE, serial=hsm.serial)
    (res,) = sign_batch(
        [SignJob(first, second, "organisation", signer_name=OFFICER_NAME, organisation=ORG_NAME)],
        hsm.pin,
        module=MODULE,
        serial=hsm.serial,
    )
    assert res.mark[0] == "SAO Y" and res.level == "B-B"
    assert second.read_bytes().startswith(first.read_bytes())

    report = verify_pdf(second.read_bytes(), [hsm.ca.pem])
    assert report.ok, report.all_problems
    officer, org = report.signatures
    assert officer.coverage == "ENTIRE_REVISION" and officer.modification_level == "FORM_FILLING"
    assert org.role == "organisation" and org.mark_position == "top-right"
    assert org.mark_font_size == pytest.approx(10.0)
    lines = org.mark_text.splitlines()
    assert lines[:3] == ["SAO Y", ORG_NAME, "Chuyển đổi từ văn bản giấy"]
    assert lines[3] == f"Người chuyển đổi: {OFFICER_NAME}"
    assert lines[4].startswith("Thời gian ký: ") and lines[4].endswith("+07:00")
    assert res.signing_time in lines[4]
    assert "ORG" not in org.signer and ORG_NAME in org.signer
    pdfsig_ok(pdfsig(second, nssdb), 2)


def test_one_pin_entry_signs_a_batch(hsm: SoftToken, tmp_path: Path) -> None:
    jobs = [
        SignJob(simple_pdf(tmp_path / f"in{i}.pdf", text=f"Doc {i}"), tmp_path / f"out{i}.pdf", "officer")
        for i in range(3)
    ]
    results = sign_batch(jobs, hsm.pin, module=MODULE, serial=hsm.serial)
    assert [r.output for r in results] == [j.output for j in jobs]
    for job in jobs:
        assert verify_pdf(job.output.read_bytes(), [hsm.ca.pem]).ok
    assert token_status(MODULE, hsm.serial)[0].pin_state.value == "ok"


def test_token_status_cli_lists_certificates(hsm: SoftToken) -> None:
    import json

    done = run_cli("token", "status", "--json", "--token", hsm.serial, "--module", str(MODULE))
    assert done.returncode == 0, done.stderr
    (tok,) = json.loads(done.stdout)
    assert tok["serial"] == hsm.serial and tok["pin_state"] == "ok"
    by_role = {c["role"]: c for c in tok["certificates"]}
    assert set(by_role) == {"officer", "organisation"}
    assert by_role["officer"]["non_repudiation"] is True
    assert 360 <= by_role["officer"]["days_to_expiry"] <= 366
    assert by_role["officer"]["cka_id"] == "01" and "Test CA" in by_role["officer"]["issuer"]


def test_result_code_validated_against_configured_pattern(hsm: SoftToken, tmp_path: Path) -> None:
    src = simple_pdf(tmp_path / "in.pdf")
    env = {**os.environ, "APPLIANCE_SIGN__RESULT_CODE_PATTERN": r"^KQ-\d{4}$"}
    bad = run_cli(
        "sign",
        str(src),
        "-o",
        str(tmp_path / "o.pdf"),
        "--role",
        "organisation",
        "--token",
        hsm.serial,
        "--result-code",
        "KQ.000.00.00.H00.000001",
        pin=hsm.pin,
        env=env,
    )
    assert bad.returncode == 1 and "invalid_result_code" in bad.stderr
    assert not (tmp_path / "o.pdf").exists()
    good = run_cli(
        "sign",
        str(src),
        "-o",
        str(tmp_path / "o.pdf"),
        "--role",
        "organisation",
        "--token",
        hsm.serial,
        "--result-code",
        "KQ-0042",
        "--json",
        pin=hsm.pin,
        env=env,
    )
    assert good.returncode == 0, good.stderr
    assert '"result_code": "KQ-0042"' in good.stdout


@pytest.mark.tesseract
def test_sign_pipeline_pdfa(hsm: SoftToken, nssdb: Path, tmp_path: Path, tesseract: str) -> None:
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("RGB", (1654, 2339), "white")
    font = ImageFont.truetype("/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf", 40)
    ImageDraw.Draw(page).text((200, 300), "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", fill="black", font=font)
    page.save(tmp_path / "page.png", dpi=(200, 200))
    pdf = tmp_path / "doc.pdf"
    done = run_cli("digitize", str(tmp_path / "page.png"), "-o", str(pdf))
    assert done.returncode == 0, done.stderr
    out = tmp_path / "signed.pdf"
    done = run_cli(
        "sign",
        str(pdf),
        "-o",
        str(out),
        "--role",
        "organisation",
        "--token",
        hsm.serial,
        "--signer-name",
        OFFICER_NAME,
        pin=hsm.pin,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(pdf.read_bytes())
    with pikepdf.open(out) as signed, signed.open_metadata() as meta:
        assert meta.get("pdfaid:part") == "2"
    assert verify_pdf(out.read_bytes(), [hsm.ca.pem]).ok
    pdfsig_ok(pdfsig(out, nssdb), 1)


# --- PAdES B-T with a real RFC 3161 server on loopback, and the fallback to B-B -----------------------------
def test_sign_bt_with_local_tsa(hsm: SoftToken, nssdb: Path, tmp_path: Path) -> None:
    import datetime as dt
    import json

    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    from appliance.sign.verify import load_roots
    from tests.softhsm import tsa_server

    src = simple_pdf(tmp_path / "in.pdf")
    out = tmp_path / "bt.pdf"
    with tsa_server(hsm.ca) as tsa:
        env = {**os.environ, "APPLIANCE_SIGN__TSA_URL": tsa.url}
        done = run_cli(
            "sign", str(src), "-o", str(out), "--role", "organisation", "--token", hsm.serial, "--json",
            pin=hsm.pin, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert tsa.requests, "the TSA was never asked"
    (res,) = json.loads(done.stdout)["signed"]
    assert res["level"] == "B-T"

    # pyHanko on its own: the CMS carries a signature timestamp token that is intact, valid and trusted
    (sig,) = PdfFileReader(io.BytesIO(out.read_bytes())).embedded_signatures
    unsigned = [a["type"].native for a in sig.signer_info["unsigned_attrs"]]
    assert unsigned == ["signature_time_stamp_token"]
    vc = ValidationContext(trust_roots=load_roots([hsm.ca.pem]), allow_fetching=False)
    status = validate_pdf_signature(sig, vc, ts_validation_context=vc)
    assert status.bottom_line
    ts = status.timestamp_validity
    assert ts is not None and ts.intact and ts.valid and ts.trusted
    assert "Test TSA" in ts.signing_cert.subject.human_friendly
    assert abs(ts.timestamp - status.signer_reported_dt) < dt.timedelta(minutes=5)

    done = run_cli("verify", str(out), "--trust", str(hsm.ca.pem), "--json")
    assert done.returncode == 0, done.stdout
    (check,) = json.loads(done.stdout)["signatures"]
    assert check["level"] == "B-T" and check["timestamp_ok"] is True and check["timestamp_time"]
    pdfsig_ok(pdfsig(out, nssdb), 1)


def test_sign_falls_back_to_bb_when_tsa_unreachable(hsm: SoftToken, tmp_path: Path) -> None:
    """No TSA listening: the batch still signs, PAdES B-B, with a warning. Also checks the B-B size budget:
    the reserved /Contents is the tight CMS estimate (no 50 % of hex zeros) and the font subset is unhinted."""
    from tests.softhsm import closed_port_url

    (res,) = sign_batch(
        [SignJob(simple_pdf(tmp_path / "in.pdf"), tmp_path / "out.pdf", "organisation")],
        hsm.pin,
        module=MODULE,
        serial=hsm.serial,
        tsa_url=closed_port_url(),
    )
    assert res.level == "B-B"
    (check,) = verify_pdf(res.output.read_bytes(), [hsm.ca.pem]).signatures
    assert check.ok and check.level == "B-B" and check.timestamp_time is None and check.timestamp_ok is None
    with pikepdf.open(res.output) as pdf:
        (annot,) = pdf.pages[0].Annots
        contents = bytes(annot.V.Contents)
        (descriptor,) = [o for o in pdf.objects if isinstance(o, pikepdf.Dictionary) and "/FontFile2" in o]
        font_bytes = len(descriptor.FontFile2.read_raw_bytes())
    assert len(contents) - len(contents.rstrip(b"\0")) <= 300  # 2048-bit RSA estimated at 512 bytes
    assert font_bytes < 6000  # unhinted subset (the hinted one was 10.5 KB)
    assert res.bytes_added < 20000
