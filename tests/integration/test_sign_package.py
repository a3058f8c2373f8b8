"""One PIN entry = one worker process = one token session: PDFs and their ASiC-E packages in one batch.

Against a real SoftHSM2 token; OpenSC's pkcs11-spy sits between the worker and SoftHSM and logs every
PKCS#11 call, so C_Login (logins) and C_Initialize (processes that loaded the module) are counted.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from appliance.errors import (
    CertificateNoNonRepudiation,
    PackageError,
    PinIncorrect,
    SignerCrashed,
    TokenRemoved,
)
from appliance.sign import batch
from appliance.sign.batch import (
    BatchResult,
    PackageJob,
    SignJob,
    sign_and_package,
    sign_detached,
    token_certificates,
    token_status,
)
from appliance.sign.package import ASIC_MANIFEST, MANIFEST, MIMETYPE, SIGNATURE, PackageRequest, verify_package
from appliance.sign.token import PinState
from appliance.sign.verify import verify_pdf
from tests.integration.test_sign import pdfsig_ok
from tests.softhsm import (
    MODULE,
    OFFICER,
    ORG_NAME,
    ORGANISATION,
    SPY,
    CertSpec,
    SoftToken,
    make_token,
    pdfsig,
    simple_pdf,
)

pytestmark = [pytest.mark.pdftools, pytest.mark.slow]

OLD_PACKAGE_ID = "ab" * 32
AUDIT = (
    {"at": "2025-05-10T09:12:00+07:00", "actor": "anh.nt", "action": "captured", "document_id": "d0", "detail": None},
    {"at": "2025-05-10T09:20:31+07:00", "actor": "anh.nt", "action": "reviewed", "document_id": "d2", "detail": "ok"},
)


@pytest.fixture
def fresh_pair_hsm(tmp_path: Path, shared_token: SoftToken, monkeypatch: pytest.MonkeyPatch) -> SoftToken:
    """A token of its own with officer and organisation certificates (logins counted, wrong PIN, removal)."""
    tok = make_token(tmp_path / "hsm", (OFFICER, ORGANISATION), ca=shared_token.ca)
    monkeypatch.setenv("SOFTHSM2_CONF", str(tok.conf))
    return tok


def _spy(monkeypatch: pytest.MonkeyPatch, log: Path) -> Path:
    if not SPY.exists():
        pytest.skip("OpenSC pkcs11-spy missing")
    monkeypatch.setenv("PKCS11SPY", str(MODULE))
    monkeypatch.setenv("PKCS11SPY_OUTPUT", str(log))
    return SPY


def _count_workers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    started: list[int] = []

    class Counting(batch._Worker):
        def __init__(self, env: dict[str, str] | None, timeout_s: float) -> None:
            super().__init__(env, timeout_s)
            started.append(self.proc.pid)

    monkeypatch.setattr(batch, "_Worker", Counting)
    return started


def _batch(tmp_path: Path) -> tuple[list[SignJob], list[PackageJob]]:
    """Three PDFs (two officer components, one organisation result) into two packages."""
    inputs = [simple_pdf(tmp_path / f"in{i}.pdf", text=f"Doc {i}") for i in range(3)]
    out = tmp_path / "signed"
    out.mkdir()
    jobs = [
        SignJob(inputs[0], out / "d0.pdf", "officer"),
        SignJob(inputs[1], out / "d1.pdf", "officer"),
        SignJob(inputs[2], out / "d2.pdf", "organisation", signer_name="Nguyễn Thị Ánh", organisation=ORG_NAME),
    ]
    packages = [
        PackageJob(
            PackageRequest(
                pdfs=(jobs[0].output, jobs[1].output),
                category="component",
                dossier_code="000.00.19.H12-230412-0007",
                fields={"d0.pdf": {"symbol": "UBND-VP"}},
            ),
            tmp_path / "component.asice",
        ),
        PackageJob(
            PackageRequest(
                pdfs=(jobs[2].output,),
                category="result",
                dossier_code="000.00.19.H12-230412-0007",
                result_code="KQ.000.00.19.H12.000001",
                supersedes=OLD_PACKAGE_ID,
                audit=AUDIT,
            ),
            tmp_path / "result.asice",
        ),
    ]
    return jobs, packages


def _nothing_written(tmp_path: Path, jobs: list[SignJob], packages: list[PackageJob], before: list[bytes]) -> None:
    assert [j.input.read_bytes() for j in jobs] == before  # inputs untouched
    assert not any(j.output.exists() for j in jobs)
    assert not any(p.output.exists() for p in packages)
    assert not list(tmp_path.rglob("*.part"))


def test_three_pdfs_two_packages_one_login_one_worker(
    fresh_pair_hsm: SoftToken, nssdb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy_log = tmp_path / "spy.log"
    module = _spy(monkeypatch, spy_log)
    workers = _count_workers(monkeypatch)
    jobs, packages = _batch(tmp_path)

    result = sign_and_package(jobs, packages, fresh_pair_hsm.pin, module=module, serial=fresh_pair_hsm.serial)

    calls = spy_log.read_text()
    assert calls.count("C_Login") == 1  # one token session for 3 PDFs and 2 package signatures
    assert calls.count("C_Initialize") == 1  # one process loaded the module
    assert len(workers) == 1
    assert isinstance(result, BatchResult)
    assert [r.output for r in result.signed] == [j.output for j in jobs]
    assert [p.path for p in result.packages] == [p.output for p in packages]
    officer, org = fresh_pair_hsm.certs["officer"], fresh_pair_hsm.certs["organisation"]
    org_sha = org.fingerprint(hashes.SHA256()).hex()
    assert [c.role for c in result.certificates] == ["officer", "organisation"]
    assert result.cert_serial == f"{officer.serial_number:x}; {org.serial_number:x}"
    assert ORG_NAME in result.cert_subject and "Nguyễn Thị Ánh" in result.cert_subject
    assert result.signed[2].cert_serial == f"{org.serial_number:x}"

    for job in jobs:  # the PDFs: pyHanko (verify_pdf) and poppler
        assert job.output.read_bytes().startswith(job.input.read_bytes())
        assert verify_pdf(job.output.read_bytes(), [fresh_pair_hsm.ca.pem]).ok
        pdfsig_ok(pdfsig(job.output, nssdb), 1)

    component, res = (verify_package(p.output.read_bytes(), [fresh_pair_hsm.ca.pem]) for p in packages)
    assert component.ok, component.all_problems
    assert res.ok, res.all_problems
    assert component.signer_cert_sha256 == res.signer_cert_sha256 == org_sha
    assert res.supersedes == OLD_PACKAGE_ID and res.audit == AUDIT
    assert component.supersedes is None and component.audit == ()
    for info, job in zip(result.packages, packages, strict=True):
        assert info.signer_sha256 == org_sha and info.bytes == job.output.stat().st_size
        with zipfile.ZipFile(job.output) as z:
            manifest = json.loads(z.read(MANIFEST))
            for name in job.request.pdfs:  # the package holds exactly the bytes published as signed PDFs
                assert z.read(name.name) == name.read_bytes()
        assert manifest == info.manifest
        assert manifest["package_signer"] == {"cert_sha256": org_sha, "subject": org.subject.rfc4514_string()}
    assert result.packages[0].manifest["supersedes"] is None and result.packages[0].manifest["audit"] == []
    assert result.packages[1].manifest["supersedes"] == OLD_PACKAGE_ID
    assert result.packages[1].manifest["audit"] == list(AUDIT)
    assert result.packages[0].manifest["documents"][0]["fields"]["symbol"] == "UBND-VP"
    assert (tmp_path / "signed" / "d0.pdf").exists() and not list(tmp_path.rglob("*.part"))


def test_wrong_pin_writes_nothing_and_is_tried_once(
    fresh_pair_hsm: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy_log = tmp_path / "spy.log"
    module = _spy(monkeypatch, spy_log)
    workers = _count_workers(monkeypatch)
    jobs, packages = _batch(tmp_path)
    before = [j.input.read_bytes() for j in jobs]

    with pytest.raises(PinIncorrect) as info:
        sign_and_package(jobs, packages, "999999", module=module, serial=fresh_pair_hsm.serial)

    assert info.value.params["pin_state"] == "count_low" and "count_low" in info.value.detail
    assert spy_log.read_text().count("C_Login") == 1 and len(workers) == 1  # no retry, no second process
    _nothing_written(tmp_path, jobs, packages, before)
    assert token_status(MODULE, fresh_pair_hsm.serial)[0].pin_state is PinState.COUNT_LOW


@pytest.mark.parametrize(
    "pull_after", [0, 2], ids=["after-the-first-pdf", "after-the-last-pdf-before-the-package-signatures"]
)
def test_token_removed_mid_batch_writes_nothing(fresh_pair_hsm: SoftToken, tmp_path: Path, pull_after: int) -> None:
    import shutil

    jobs, packages = _batch(tmp_path)
    before = [j.input.read_bytes() for j in jobs]

    def pull_token(index: int) -> bool:
        if index == pull_after:
            for child in fresh_pair_hsm.tokendir.iterdir():
                shutil.rmtree(child)
        return True

    with pytest.raises(TokenRemoved):
        sign_and_package(
            jobs, packages, fresh_pair_hsm.pin, module=MODULE, serial=fresh_pair_hsm.serial, on_signed=pull_token
        )
    _nothing_written(tmp_path, jobs, packages, before)


def test_worker_killed_mid_batch_writes_nothing(hsm: SoftToken, tmp_path: Path) -> None:
    """A vendor module that crashes takes the worker down (SIGKILL here): still nothing is written."""
    import psutil

    jobs, packages = _batch(tmp_path)
    before = [j.input.read_bytes() for j in jobs]

    def crash(index: int) -> bool:
        if index == 1:
            for child in psutil.Process().children():
                if "appliance.sign.worker" in child.cmdline():
                    child.kill()  # not waited for here: the batch's own Popen reaps it
        return True

    with pytest.raises(SignerCrashed, match="-9"):
        sign_and_package(jobs, packages, hsm.pin, module=MODULE, serial=hsm.serial, on_signed=crash)
    _nothing_written(tmp_path, jobs, packages, before)


def test_a_failing_package_writes_nothing(hsm: SoftToken, tmp_path: Path) -> None:
    """The PDFs were signed, then a package cannot be made (one of its files is no PDF): no file at all."""
    jobs, packages = _batch(tmp_path)
    before = [j.input.read_bytes() for j in jobs]
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(b"not a pdf")
    bad = PackageJob(
        PackageRequest(pdfs=(jobs[2].output, junk), category="result", dossier_code="D"), packages[1].output
    )
    with pytest.raises(PackageError, match="junk.pdf"):
        sign_and_package(jobs, [packages[0], bad], hsm.pin, module=MODULE, serial=hsm.serial)
    _nothing_written(tmp_path, jobs, packages, before)


def test_refusals_come_before_the_pin(
    odd_token: SoftToken, hsm: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package signer without non-repudiation, or a malformed package request, is refused with no
    login at all (a wrong PIN is given on purpose: the token never sees it)."""
    spy_log = tmp_path / "spy.log"
    module = _spy(monkeypatch, spy_log)
    jobs, packages = _batch(tmp_path)
    before = [j.input.read_bytes() for j in jobs]
    with pytest.raises(PackageError, match="supersedes"):
        sign_and_package(
            jobs,
            [PackageJob(PackageRequest(pdfs=(jobs[0].output,), category="component", dossier_code="D", supersedes="x"),
                        tmp_path / "p.asice")],
            "999999",
            module=module,
            serial=hsm.serial,
        )  # fmt: skip
    with pytest.raises(PackageError, match="unknown category"):
        sign_and_package(
            jobs,
            [PackageJob(PackageRequest(pdfs=(jobs[0].output,), category="other", dossier_code="D"), tmp_path / "p")],
            "999999",
            module=module,
            serial=hsm.serial,
        )
    monkeypatch.setenv("SOFTHSM2_CONF", str(odd_token.conf))  # its organisation certificate lacks non-repudiation
    officer_only = PackageRequest(pdfs=(simple_pdf(tmp_path / "old.pdf"),), category="component", dossier_code="D")
    with pytest.raises(CertificateNoNonRepudiation):
        sign_and_package([], [PackageJob(officer_only, tmp_path / "p.asice")], "999999", module=module)
    assert not spy_log.exists() or spy_log.read_text().count("C_Login") == 0
    assert token_status(MODULE, odd_token.serial)[0].pin_state is PinState.OK
    _nothing_written(tmp_path, jobs, packages, before)


def _resign(files: dict[str, bytes], manifest: dict[str, object], path: Path, token: SoftToken) -> bytes:
    """The package `files` with this manifest.json, validly signed again with the organisation key."""
    from appliance.sign.package import asic_manifest

    files = {**files, MANIFEST: json.dumps(manifest, ensure_ascii=False).encode()}
    files[ASIC_MANIFEST] = asic_manifest(
        {MANIFEST: (files[MANIFEST], "application/json"), "d0.pdf": (files["d0.pdf"], "application/pdf")}
    )
    files[SIGNATURE] = sign_detached(
        files[ASIC_MANIFEST], token.pin, role="organisation", module=MODULE, serial=token.serial
    ).der
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), MIMETYPE, compress_type=zipfile.ZIP_STORED)
        for name, blob in files.items():
            if name != "mimetype":
                z.writestr(name, blob)
    return path.read_bytes()


def test_packages_without_supersedes_and_audit_still_verify(hsm: SoftToken, tmp_path: Path) -> None:
    """A package made before `supersedes`/`audit` existed (no such keys) verifies and reports None / ()."""
    jobs, _packages = _batch(tmp_path)
    request = PackageRequest(pdfs=(jobs[0].output,), category="component", dossier_code="D")
    (pkg,) = sign_and_package(
        jobs[:1], [PackageJob(request, tmp_path / "new.asice")], hsm.pin, module=MODULE, serial=hsm.serial
    ).packages
    with zipfile.ZipFile(pkg.path) as z:
        files = {i.filename: z.read(i) for i in z.infolist()}
    manifest = json.loads(files[MANIFEST])
    del manifest["supersedes"], manifest["audit"]
    report = verify_package(_resign(files, manifest, tmp_path / "old.asice", hsm), [hsm.ca.pem])
    assert report.ok, report.all_problems
    assert report.supersedes is None and report.audit == ()

    # malformed values are reported, not passed on
    manifest |= {"supersedes": "not-an-id", "audit": "nope"}
    bad = verify_package(_resign(files, manifest, tmp_path / "bad.asice", hsm), [hsm.ca.pem])
    assert [p.code for p in bad.problems] == ["bad_container", "bad_container"]
    assert bad.supersedes is None and bad.audit == ()


def test_token_certificates_name_the_person(
    shared_token: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signing page's pre-check: certificates without a PIN, with CN, hex serial and subject IDs."""
    from dataclasses import replace

    spec: CertSpec = replace(OFFICER, uid="CCCD:001203004005", subject_serial="CMND:123456789")
    tok = make_token(tmp_path / "hsm", (spec,), ca=shared_token.ca)
    monkeypatch.setenv("SOFTHSM2_CONF", str(tok.conf))
    (cert,) = [c for c in token_certificates(MODULE, tok.serial) if not c.is_ca]
    issued = tok.certs["officer"]
    assert cert.common_name == OFFICER.common_name and cert.role == "officer"
    assert cert.serial == f"{issued.serial_number:x}"
    assert cert.subject_uid == "CCCD:001203004005" and cert.subject_serial_number == "CMND:123456789"
    assert token_certificates(MODULE)[0].sha256 == cert.sha256  # the only token present
