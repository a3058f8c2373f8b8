"""Circular 15/2025/TT-BKHCN on a real SoftHSM2 token: RSASSA-PSS, ECDSA, and the checks before signing.

Certificates carry a CRL distribution point served by a plain HTTP server on loopback. Refusals are
counted with OpenSC's pkcs11-spy between the worker and SoftHSM: a refused certificate costs no C_Login
and no C_Sign, and nothing is written.
"""

from __future__ import annotations

import os
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.errors import (
    ApplianceError,
    CertificateExpired,
    CertificateKeyTooSmall,
    CertificateRevoked,
    CertificateUntrusted,
    RevocationUnknown,
    SignatureAlgorithmUnavailable,
)
from appliance.messages_vi import message_for
from appliance.sign import batch
from appliance.sign.batch import PackageJob, SignJob, sign_and_package, sign_batch
from appliance.sign.package import SIGNATURE, PackageRequest, verify_package
from appliance.sign.policy import ECDSA, PKCS1, PSS, SignPolicy
from appliance.sign.report import verification_lines
from appliance.sign.verify import verify_pdf
from tests.integration.test_sign import pdfsig_ok, run_cli
from tests.softhsm import (
    EXPIRED,
    MODULE,
    OFFICER,
    ORG_NAME,
    ORGANISATION,
    SPY,
    CertSpec,
    FileServer,
    OcspServer,
    SoftToken,
    closed_port_url,
    file_server,
    make_ca,
    make_crl,
    make_intermediate,
    make_token,
    ocsp_server,
    pdfsig,
    policy_for,
    simple_pdf,
    trust_settings,
)

pytestmark = [pytest.mark.pdftools, pytest.mark.slow]

CA_NAME = "Test CA for the appliance"
REVOKED_NAME = "Lê Văn Thu Hồi"


@pytest.fixture(scope="module")
def crl_server() -> Iterator[FileServer]:
    with file_server() as server:
        yield server


@pytest.fixture(scope="module")
def ocsp_responder(shared_token: SoftToken) -> Iterator[OcspServer]:
    with ocsp_server(shared_token.ca) as server:
        yield server


@pytest.fixture(scope="module")
def policy_token(
    tmp_path_factory: pytest.TempPathFactory,
    shared_token: SoftToken,
    crl_server: FileServer,
    ocsp_responder: OcspServer,
) -> SoftToken:
    """Officer and organisation certificates with a CRL, one revoked, one 1024-bit, one EC P-256, one whose
    CRL address answers nobody, two asking an OCSP responder (good, revoked); all from the shared test CA
    (which the NSS db trusts)."""
    crl = crl_server.url("ca.crl")
    tok = make_token(
        tmp_path_factory.mktemp("policy"),
        (
            replace(OFFICER, crl_url=crl),
            replace(ORGANISATION, crl_url=crl),
            CertSpec("31", "revoked", REVOKED_NAME, crl_url=crl),
            CertSpec("32", "short", "Trần Khóa Ngắn", key="rsa:1024", crl_url=crl),
            CertSpec("33", "ec", "Phạm Thị Ec", key="EC:prime256v1", crl_url=crl),
            CertSpec("34", "offline", "Đỗ Văn Mất Mạng", crl_url=closed_port_url()),
            CertSpec("35", "ocsp-good", "Vũ Thị Ocsp", ocsp_url=ocsp_responder.url),
            CertSpec("36", "ocsp-revoked", "Vũ Văn Bị Thu", ocsp_url=ocsp_responder.url),
        ),
        label="policy-token",
        ca=shared_token.ca,
    )
    crl_server.files["ca.crl"] = make_crl(shared_token.ca, (tok.certs["revoked"],))
    for label in ("ocsp-good", "ocsp-revoked"):
        ocsp_responder.certs[tok.certs[label].serial_number] = tok.certs[label]
    ocsp_responder.revoked.add(tok.certs["ocsp-revoked"].serial_number)
    return tok


@pytest.fixture
def on_token(policy_token: SoftToken, monkeypatch: pytest.MonkeyPatch) -> SoftToken:
    monkeypatch.setenv("SOFTHSM2_CONF", str(policy_token.conf))
    return policy_token


def _spy(monkeypatch: pytest.MonkeyPatch, log: Path) -> Path:
    if not SPY.exists():
        pytest.skip("OpenSC pkcs11-spy missing")
    monkeypatch.setenv("PKCS11SPY", str(MODULE))
    monkeypatch.setenv("PKCS11SPY_OUTPUT", str(log))
    return SPY


def _calls(log: Path, name: str) -> int:
    return log.read_text().count(name) if log.exists() else 0


def _sign(
    tok: SoftToken, src: Path, out: Path, policy: SignPolicy | None, *, cert_id: str = "01", module: Path = MODULE
) -> batch.SignResult:
    (result,) = sign_batch(
        [SignJob(src, out, "officer", cert_id=cert_id)], tok.pin, module=module, serial=tok.serial, policy=policy
    )
    return result


# --- RSASSA-PSS, for PDFs and packages ------------------------------------------------------------------
def test_softhsm_signs_rsassa_pss_and_pdfsig_and_pyhanko_trust_it(
    on_token: SoftToken, nssdb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    from appliance.sign.verify import load_roots

    log = tmp_path / "spy.log"
    module = _spy(monkeypatch, log)
    jobs = [SignJob(simple_pdf(tmp_path / "in.pdf"), tmp_path / "officer.pdf", "officer", cert_id="01")]
    packages = [
        PackageJob(
            PackageRequest(pdfs=(jobs[0].output,), category="component", dossier_code="000.00.19.H12-230412-0007"),
            tmp_path / "p.asice",
        )
    ]
    policy = policy_for(on_token.ca, cache_dir=tmp_path / "cache")
    assert isinstance(policy, SignPolicy)
    done = sign_and_package(jobs, packages, on_token.pin, module=module, serial=on_token.serial, policy=policy)

    (signed,) = done.signed
    assert signed.algorithm == PSS and not signed.algorithm_fallback and signed.algorithm_note == ""
    assert signed.trust_path == ("Nguyễn Thị Ánh", CA_NAME)
    assert (signed.revocation, signed.revocation_source) == ("good", "crl")
    (package,) = done.packages
    assert package.algorithm == PSS and package.revocation == "good"
    assert {c.revocation for c in done.checks} == {"good"}
    calls = log.read_text()
    assert calls.count("C_Login") == 1
    assert "CKM_SHA256_RSA_PKCS_PSS" in calls  # what the token was asked to do (spy's own log)
    assert "CKM_SHA256_RSA_PKCS\n" not in calls.replace("CKM_SHA256_RSA_PKCS_PSS", "")

    # pyHanko: RSASSA-PSS, intact, valid, trusted
    with jobs[0].output.open("rb") as f:
        (sig,) = PdfFileReader(f).embedded_signatures
        vc = ValidationContext(trust_roots=load_roots([on_token.ca.pem]), allow_fetching=False)
        status = validate_pdf_signature(sig, vc)
    assert status.pkcs7_signature_mechanism == "rsassa_pss" and status.bottom_line
    # poppler/NSS: valid and trusted
    pdfsig_ok(pdfsig(jobs[0].output, nssdb), 1)

    # the package's CAdES signature is RSASSA-PSS too, and verifies
    from asn1crypto import cms

    with zipfile.ZipFile(package.path) as z:
        info = cms.ContentInfo.load(z.read(SIGNATURE))
    assert info["content"]["signer_infos"][0]["signature_algorithm"].signature_algo == "rsassa_pss"
    report = verify_package(package.path.read_bytes(), [on_token.ca.pem])
    assert report.ok, report.all_problems
    assert report.algorithm == PSS and report.documents[0].signatures[0].algorithm == PSS
    lines = verification_lines(report)
    assert "Kết quả: HỢP LỆ" in lines and f"Chữ ký của gói: {ORG_NAME}, RSASSA-PSS (SHA-256)" in lines
    assert "    Người ký: Nguyễn Thị Ánh" in lines  # the document's signature, indented under the package


def test_revocation_answer_is_cached_and_used_offline(
    on_token: SoftToken, crl_server: FileServer, tmp_path: Path
) -> None:
    policy = policy_for(on_token.ca, cache_dir=tmp_path / "cache")
    assert isinstance(policy, SignPolicy)
    src = simple_pdf(tmp_path / "in.pdf")
    first = _sign(on_token, src, tmp_path / "a.pdf", policy)
    assert (first.revocation, first.revocation_source) == ("good", "crl")
    assert list((tmp_path / "cache").glob("crl-*.der"))
    saved = crl_server.files.pop("ca.crl")  # the link is down: the distribution point answers 404
    try:
        second = _sign(on_token, src, tmp_path / "b.pdf", policy)
    finally:
        crl_server.files["ca.crl"] = saved
    assert (second.revocation, second.revocation_source) == ("good", "crl-cache")


def test_chain_through_a_configured_intermediate(
    shared_token: SoftToken, nssdb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token holds only the signer's certificate; provincial IT configured the intermediate. The path
    is checked before signing and the intermediate travels in the signature, so a verifier that trusts
    only the root (and pdfsig) still builds the path."""
    inter = make_intermediate(shared_token.ca, tmp_path / "inter")
    tok = make_token(tmp_path / "hsm", (OFFICER,), label="inter-token", ca=inter)
    monkeypatch.setenv("SOFTHSM2_CONF", str(tok.conf))
    policy = policy_for(shared_token.ca)
    assert isinstance(policy, SignPolicy)
    policy = replace(policy, trust_roots=(str(shared_token.ca.pem), str(inter.pem)))
    out = tmp_path / "out.pdf"
    signed = _sign(tok, simple_pdf(tmp_path / "in.pdf"), out, policy)
    assert signed.trust_path == ("Nguyễn Thị Ánh", "Test Intermediate CA", CA_NAME)
    (check,) = verify_pdf(out.read_bytes(), [shared_token.ca.pem]).signatures
    assert check.ok and check.trust_path == signed.trust_path, check.problems
    pdfsig_ok(pdfsig(out, nssdb), 1)
    # without the configured intermediate there is no path: refused before the PIN
    with pytest.raises(CertificateUntrusted):
        _sign(tok, simple_pdf(tmp_path / "in2.pdf"), tmp_path / "no.pdf", policy_for(shared_token.ca))  # type: ignore[arg-type]


# --- refusals before the PIN: no login, no signature, nothing written ------------------------------------
def _refused(
    tok: SoftToken,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    policy: object,
    cert_id: str,
    error: type[ApplianceError],
) -> ApplianceError:
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "spy.log"
    module = _spy(monkeypatch, log)
    out = tmp_path / "out.pdf"
    assert isinstance(policy, SignPolicy)
    with pytest.raises(error) as caught:
        _sign(tok, simple_pdf(tmp_path / "in.pdf"), out, policy, cert_id=cert_id, module=module)
    assert _calls(log, "C_Login") == 0 and _calls(log, "C_Sign") == 0
    assert not out.exists() and not out.with_name("out.pdf.part").exists()
    return caught.value


def test_revoked_certificate_refused_before_the_pin(
    on_token: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    err = _refused(on_token, tmp_path, monkeypatch, policy_for(on_token.ca), "31", CertificateRevoked)
    assert "on the CRL" in str(err)
    assert message_for(err).startswith("Chứng thư số trên token đã bị thu hồi")


def test_ocsp_good_signs_and_ocsp_revoked_is_refused(
    on_token: SoftToken, ocsp_responder: OcspServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = policy_for(on_token.ca, cache_dir=tmp_path / "cache")
    assert isinstance(policy, SignPolicy)
    good = _sign(on_token, simple_pdf(tmp_path / "in.pdf"), tmp_path / "good.pdf", policy, cert_id="35")
    assert (good.revocation, good.revocation_source) == ("good", "ocsp")
    assert on_token.certs["ocsp-good"].serial_number in ocsp_responder.hits
    err = _refused(on_token, tmp_path / "r", monkeypatch, policy, "36", CertificateRevoked)
    assert "OCSP" in str(err)


def test_short_rsa_key_refused_before_the_pin(
    on_token: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    err = _refused(on_token, tmp_path, monkeypatch, policy_for(on_token.ca), "32", CertificateKeyTooSmall)
    assert "1024-bit" in str(err)
    assert "2048 bit" in message_for(err)


def test_untrusted_chain_refused_before_the_pin(
    on_token: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = make_ca(tmp_path / "other", name="Some other CA")
    err = _refused(on_token, tmp_path, monkeypatch, policy_for(other), "01", CertificateUntrusted)
    assert "no path to a trusted root" in str(err)
    assert "chuỗi tin cậy" in message_for(err)


def test_configured_root_without_a_pin_is_not_trusted(
    on_token: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = policy_for(on_token.ca, trusted_root_sha256=())  # the PEM file alone
    err = _refused(on_token, tmp_path, monkeypatch, policy, "01", CertificateUntrusted)
    assert "is not pinned" in str(err)


def test_expired_certificate_refused_before_the_pin(
    odd_token: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOFTHSM2_CONF", str(odd_token.conf))
    err = _refused(odd_token, tmp_path, monkeypatch, policy_for(odd_token.ca), EXPIRED.cka_id, CertificateExpired)
    assert "hết hạn" in message_for(err)


def test_revocation_unknown_offline_blocks_or_warns_by_setting(
    on_token: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = policy_for(on_token.ca, revocation_unknown="block")
    err = _refused(on_token, tmp_path, monkeypatch, block, "34", RevocationUnknown)
    assert str(err).startswith("offline:")
    assert "mất mạng" in message_for(err)

    warn = policy_for(on_token.ca, revocation_unknown="warn")
    assert isinstance(warn, SignPolicy)
    signed = _sign(on_token, simple_pdf(tmp_path / "in2.pdf"), tmp_path / "warned.pdf", warn, cert_id="34")
    assert signed.revocation == "unknown" and signed.revocation_detail.startswith("offline:")
    assert signed.algorithm == PSS


def test_without_a_policy_nothing_is_silently_trusted(on_token: SoftToken, tmp_path: Path) -> None:
    """A caller that passes no policy still gets PSS, and every result says trust was not checked."""
    signed = _sign(on_token, simple_pdf(tmp_path / "in.pdf"), tmp_path / "out.pdf", None)
    assert signed.algorithm == PSS
    assert signed.trust_path == () and signed.revocation == "not_checked"


# --- ECDSA P-256 ----------------------------------------------------------------------------------------
def test_ec_p256_token_signs_ecdsa(on_token: SoftToken, nssdb: Path, tmp_path: Path) -> None:
    policy = policy_for(on_token.ca)
    assert isinstance(policy, SignPolicy)
    out = tmp_path / "ec.pdf"
    signed = _sign(on_token, simple_pdf(tmp_path / "in.pdf"), out, policy, cert_id="33")
    assert signed.algorithm == ECDSA and signed.revocation == "good"
    (check,) = verify_pdf(out.read_bytes(), [on_token.ca.pem]).signatures
    assert check.ok and check.algorithm == ECDSA and check.key == "EC 256", check.problems
    pdfsig_ok(pdfsig(out, nssdb), 1)


# --- a token without PSS: PKCS#1 v1.5 only under the policy, and visibly --------------------------------
@pytest.fixture
def token_without_pss(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch._Worker, "command", ("-m", "tests.nopss_worker"))


def test_token_without_pss_falls_back_under_prefer_only(
    on_token: SoftToken, token_without_pss: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefer = policy_for(on_token.ca, signature_policy="prefer")
    assert isinstance(prefer, SignPolicy)
    out = tmp_path / "fallback.pdf"
    signed = _sign(on_token, simple_pdf(tmp_path / "in.pdf"), out, prefer)
    assert signed.algorithm == PKCS1 and signed.algorithm_fallback and signed.algorithm_note == "token_without_pss"
    report = verify_pdf(out.read_bytes(), [on_token.ca.pem])
    assert report.ok and report.signatures[0].algorithm == PKCS1
    assert "legacy_algorithm" in report.signatures[0].notes
    assert any("PKCS#1 v1.5" in line for line in verification_lines(report))  # shown, not hidden

    require = policy_for(on_token.ca, signature_policy="require")
    err = _refused(on_token, tmp_path / "req", monkeypatch, require, "01", SignatureAlgorithmUnavailable)
    assert "CKM_SHA256_RSA_PKCS_PSS" in str(err)


def test_legacy_policy_signs_pkcs1_and_says_so(on_token: SoftToken, tmp_path: Path) -> None:
    legacy = policy_for(on_token.ca, signature_policy="legacy")
    assert isinstance(legacy, SignPolicy)
    signed = _sign(on_token, simple_pdf(tmp_path / "in.pdf"), tmp_path / "legacy.pdf", legacy)
    assert signed.algorithm == PKCS1 and signed.algorithm_note == "legacy_policy"


# --- verification in Vietnamese, the printable report -------------------------------------------------
def test_verify_prints_vietnamese_and_writes_a_report(
    on_token: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = policy_for(on_token.ca)
    assert isinstance(policy, SignPolicy)
    signed = tmp_path / "signed.pdf"
    _sign(on_token, simple_pdf(tmp_path / "in.pdf"), signed, policy)
    trust_settings(monkeypatch, on_token.ca, data_dir=tmp_path / "data")  # trust from settings: pinned

    report_pdf = tmp_path / "report.pdf"
    done = run_cli("verify", str(signed), "--report", str(report_pdf), env=dict(os.environ))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for expected in (
        "Kết quả: HỢP LỆ",
        "Người ký: Nguyễn Thị Ánh",
        "Tổ chức: UBND xã Quảng Phú",
        "Toàn vẹn: Nội dung không bị thay đổi sau khi ký",
        f"Chuỗi tin cậy: Nguyễn Thị Ánh → {CA_NAME}",
        "Tình trạng thu hồi: Chưa bị thu hồi (CRL)",
        "Thuật toán: RSASSA-PSS (SHA-256), khóa RSA 2048 bit",
    ):
        assert expected in out, out
    assert "+07:00" in next(line for line in out.splitlines() if "Thời gian ký" in line)

    english = run_cli("verify", str(signed), "--lang", "en", env=dict(os.environ))
    assert "Signer: Nguyễn Thị Ánh" in english.stdout and "Revocation: not revoked (CRL)" in english.stdout
    assert '"algorithm": "rsassa-pss-sha256"' in run_cli("verify", str(signed), "--json", env=dict(os.environ)).stdout

    text = subprocess.run(["pdftotext", str(report_pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "KẾT QUẢ KIỂM TRA CHỮ KÝ SỐ" in text and "Nguyễn Thị Ánh" in text and "RSASSA-PSS" in text
    import pikepdf

    with pikepdf.open(report_pdf) as pdf:
        assert len(pdf.pages) == 1

    # tampered: the reason in Vietnamese, exit 1
    data = bytearray(signed.read_bytes())
    data[300] ^= 1
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(bytes(data))
    failed = run_cli("verify", str(bad), env=dict(os.environ))
    assert failed.returncode == 1 and "Nội dung đã bị thay đổi sau khi ký (tampered)" in failed.stdout


def test_cli_sign_follows_the_policy_and_shows_the_algorithm(hsm: SoftToken, tmp_path: Path) -> None:
    done = run_cli(
        "sign", str(simple_pdf(tmp_path / "in.pdf")), "-o", str(tmp_path / "o.pdf"), "--role", "officer",
        "--token", hsm.serial, pin=hsm.pin,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "algorithm RSASSA-PSS (SHA-256)" in done.stdout and f"-> {CA_NAME}" in done.stdout
