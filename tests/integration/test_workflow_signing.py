"""Signing as the core does it (appliance.signing), against a real SoftHSM2 token: reviewed documents are
signed, packaged and queued with one login; refusals come before the PIN is used; the certificate must
name the officer (or be confirmed); a wrong PIN changes nothing; a correction's package names the package
it supersedes and carries the audit trail.

OpenSC's pkcs11-spy sits between the signing worker and SoftHSM where logins are counted.
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from appliance import db, delivery, documents, dossiers, pipeline, signing
from appliance.db import DocState
from appliance.errors import (
    CertificateMismatch,
    NothingChosen,
    NotReadyToSign,
    PinIncorrect,
    PinRequired,
    WorkflowError,
)
from appliance.originals import OriginalStore
from appliance.outbox import store as outbox
from appliance.records import AuditEvent, DocumentInfo, Kind
from appliance.settings import Settings, load_settings
from appliance.sign.batch import token_certificates, token_status
from appliance.sign.package import MANIFEST, verify_package
from appliance.sign.token import CertInfo, PinState
from appliance.workflow import Actor
from tests.integration.test_workflow import AGENCY, ANH, BINH, CODE, code, make_doc, review, trail
from tests.softhsm import (
    MODULE,
    OFFICER,
    OFFICER_NAME,
    ORG_NAME,
    ORGANISATION,
    SPY,
    SoftToken,
    ca_sha256,
    make_token,
    simple_pdf,
)

pytestmark = [pytest.mark.softhsm, pytest.mark.slow]
S = DocState
TTHC = "1.001234"


@pytest.fixture
def fresh_pair(tmp_path: Path, shared_token: SoftToken, monkeypatch: pytest.MonkeyPatch) -> SoftToken:
    """A token of its own with both certificates (for tests that try a PIN or must see it untouched)."""
    tok = make_token(tmp_path / "hsm", (OFFICER, ORGANISATION), ca=shared_token.ca)
    monkeypatch.setenv("SOFTHSM2_CONF", str(tok.conf))
    return tok


def _settings(tmp_path: Path, token: SoftToken, module: Path = MODULE) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        commune_code="12345",
        sign={
            "pkcs11_module": module,
            "token_serial": token.serial,
            "organisation_name": ORG_NAME,
            "agency_code": AGENCY,
            "trust_roots": [token.ca.pem],  # the test CA, configured and pinned as a box trusts its roots
            "trusted_root_sha256": [ca_sha256(token.ca)],
        },
    )


def _spy(monkeypatch: pytest.MonkeyPatch, log: Path) -> Path:
    if not SPY.exists():
        pytest.skip("OpenSC pkcs11-spy missing")
    monkeypatch.setenv("PKCS11SPY", str(MODULE))
    monkeypatch.setenv("PKCS11SPY_OUTPUT", str(log))
    return SPY


def _logins(log: Path) -> int:
    return log.read_text().count("C_Login") if log.exists() else 0


def _reviewed(
    factory: sessionmaker[Session], originals: OriginalStore, pdfs: Path, *, kind: str, actor: Actor = ANH
) -> str:
    """A digitized document whose PDF/A is a real PDF, reviewed by ``actor``."""
    with db.transaction(factory) as session:
        dossiers.open_dossier(session, actor=ANH, form={"code": CODE, "tthc_code": TTHC})
        doc = make_doc(session, originals)
        doc.pdf_path = str(simple_pdf(pdfs / f"{doc.id}.pdf", text=f"Doc {doc.id[:8]}"))
        fields = {"trich_yeu": f"Tài liệu {kind}", "so_ky_hieu": "12/GCN"}
        review(session, doc.id, actor=actor, kind=kind, auto_code=kind == Kind.RESULT, fields=fields)
        return doc.id


def _state(factory: sessionmaker[Session], doc_ids: list[str]) -> list[str]:
    with db.transaction(factory) as session:
        return [documents.load(session, d).doc.state for d in doc_ids]


def _outbox_count(factory: sessionmaker[Session]) -> int:
    with db.transaction(factory) as session:
        return int(session.scalar(select(func.count()).select_from(outbox.OutboxItem)) or 0)


def _manifest(path: str | Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as z:
        manifest: dict[str, Any] = json.loads(z.read(MANIFEST))
        return manifest


def test_reviewed_documents_are_signed_packaged_and_queued_with_one_login(
    hsm: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "spy.log"
    settings = _settings(tmp_path, hsm, _spy(monkeypatch, log))
    store = pipeline.storage(settings)
    component = _reviewed(store.factory, store.originals, tmp_path, kind=Kind.COMPONENT)
    result = _reviewed(store.factory, store.originals, tmp_path, kind=Kind.RESULT, actor=BINH)
    with db.transaction(store.factory) as session:
        listed = {s.id: s for s in signing.ready(session, actor=ANH)}
        assert set(listed) == {component, result}
        assert listed[component].mine and not listed[result].mine  # only her own are pre-selected
        assert listed[result].result_code == code(1) and listed[result].ready
    certs = token_certificates(MODULE, hsm.serial)
    assert signing.check_certificate(certs, ANH) is not None and signing.check_certificate(certs, ANH).matches  # type: ignore[union-attr]

    signed = signing.sign(
        store.factory, settings, actor=ANH, doc_ids=[component, result, component], pin=hsm.pin, certificates=certs
    )

    assert _logins(log) == 1  # two PDFs and two packages, one PIN entry
    assert signed.documents == (component, result) and len(signed.packages) == 2
    officer, org = hsm.certs["officer"], hsm.certs["organisation"]
    assert _state(store.factory, [component, result]) == ["queued", "queued"]
    with db.transaction(store.factory) as session:
        items = {i.package_id: i for i in outbox.list_items(session)}
        assert set(items) == set(signed.packages)
        for doc_id, cert, priority in (
            (component, officer, outbox.PRIORITY_PACKAGE),
            (result, org, outbox.PRIORITY_RECEIPT),
        ):
            info = session.get(DocumentInfo, doc_id)
            assert info is not None and info.package_id in items
            assert items[info.package_id].priority == priority and items[info.package_id].dossier_code == CODE
            assert info.signed_by == "anh.nt" and info.signed_at is not None
            assert info.signed_path and Path(info.signed_path).read_bytes().startswith(b"%PDF")
            assert info.cert_serial == f"{cert.serial_number:x}"
            events = trail(session, doc_id)
            assert [e.action for e in events][-3:] == ["review", "signed", "queued"]
            sign_event, queue_event = events[-2], events[-1]
            assert sign_event.actor == "anh.nt" and sign_event.detail["from"] == "reviewed"
            assert sign_event.detail["certificate_serial"] == f"{cert.serial_number:x}"
            assert sign_event.detail["certificate_subject"] == info.cert_subject
            assert (OFFICER_NAME if cert is officer else ORG_NAME) in sign_event.detail["certificate_subject"]
            assert queue_event.detail == {
                "from": "signed",
                "to": "queued",
                "package_id": info.package_id,
                "supersedes": None,
            }
            assert "certificate_confirmed" not in [e.action for e in events]

            manifest = _manifest(items[info.package_id].path)
            assert manifest["package_id"] == info.package_id and manifest["supersedes"] is None
            assert (manifest["dossier_code"], manifest["tthc_code"], manifest["commune_code"]) == (CODE, TTHC, "12345")
            assert manifest["result_code"] == (code(1) if doc_id == result else None)
            audit_events = manifest["audit"]
            assert isinstance(audit_events, list) and {e["document_id"] for e in audit_events} == {doc_id}
            assert [e["action"] for e in audit_events][-1] == "review"  # the trail up to the signature
            (entry,) = manifest["documents"]
            assert entry["fields"]["summary"] == ("Tài liệu component" if doc_id == component else "Tài liệu result")
            report = verify_package(Path(items[info.package_id].path).read_bytes(), [hsm.ca.pem])
            assert report.ok, report.all_problems
        assert signing.ready(session, actor=ANH) == []


def test_refusals_come_before_the_pin(fresh_pair: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing chosen, no PIN, a document that is not reviewed (or unknown): refused, and a wrong PIN given on
    purpose never reaches the token."""
    log = tmp_path / "spy.log"
    settings = _settings(tmp_path, fresh_pair, _spy(monkeypatch, log))
    store = pipeline.storage(settings)
    ready = _reviewed(store.factory, store.originals, tmp_path, kind=Kind.COMPONENT)
    with db.transaction(store.factory) as session:
        unreviewed = make_doc(session, store.originals).id
        captured = make_doc(session, store.originals, state=S.CAPTURED).id
        n = int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)

    def sign(doc_ids: list[str], pin: str = "999999") -> None:
        signing.sign(store.factory, settings, actor=ANH, doc_ids=doc_ids, pin=pin)

    with pytest.raises(NothingChosen):
        sign([])
    with pytest.raises(PinRequired):
        sign([ready], pin="")
    for bad in (unreviewed, captured, "no-such-document"):
        with pytest.raises(NotReadyToSign):
            sign([ready, bad])

    assert _logins(log) == 0
    assert token_status(MODULE, fresh_pair.serial)[0].pin_state is PinState.OK
    assert _state(store.factory, [ready, unreviewed, captured]) == ["reviewed", "digitized", "captured"]
    assert _outbox_count(store.factory) == 0
    with db.transaction(store.factory) as session:
        assert int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0) == n


def test_a_certificate_that_does_not_name_the_officer_needs_a_confirmation(
    fresh_pair: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "spy.log"
    settings = _settings(tmp_path, fresh_pair, _spy(monkeypatch, log))
    store = pipeline.storage(settings)
    component = _reviewed(store.factory, store.originals, tmp_path, kind=Kind.COMPONENT, actor=BINH)
    result = _reviewed(store.factory, store.originals, tmp_path, kind=Kind.RESULT, actor=BINH)
    certs = token_certificates(MODULE, fresh_pair.serial)
    check = signing.check_certificate(certs, BINH)
    assert check is not None and not check.matches and check.common_name == OFFICER_NAME

    with pytest.raises(CertificateMismatch) as info:  # a wrong PIN on purpose: it must never be tried
        signing.sign(store.factory, settings, actor=BINH, doc_ids=[component, result], pin="999999", certificates=certs)
    assert info.value.params["subject"] == check.subject
    assert _logins(log) == 0
    assert token_status(MODULE, fresh_pair.serial)[0].pin_state is PinState.OK
    assert _state(store.factory, [component, result]) == ["reviewed", "reviewed"]

    signing.sign(  # results alone are signed with the organisation's certificate: no question asked
        store.factory, settings, actor=BINH, doc_ids=[result], pin=fresh_pair.pin, certificates=certs
    )
    signing.sign(
        store.factory,
        settings,
        actor=BINH,
        doc_ids=[component],
        pin=fresh_pair.pin,
        certificates=certs,
        confirm_certificate=True,
    )
    assert _logins(log) == 2
    assert _state(store.factory, [component, result]) == ["queued", "queued"]
    with db.transaction(store.factory) as session:
        confirmed = [e for e in trail(session, component) if e.action == "certificate_confirmed"]
        assert [(e.actor, e.detail) for e in confirmed] == [
            ("binh.tv", {"certificate": check.subject, "officer": BINH.full_name})
        ]
        assert "certificate_confirmed" not in [e.action for e in trail(session, result)]


def test_names_officer_by_folded_name_or_id_number(
    shared_token: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = replace(OFFICER, uid="CCCD:001203004005", subject_serial="CMND:123456789")
    tok = make_token(tmp_path / "hsm", (spec,), ca=shared_token.ca)
    monkeypatch.setenv("SOFTHSM2_CONF", str(tok.conf))
    certs = token_certificates(MODULE, tok.serial)
    cert = signing.officer_certificate(certs)
    assert cert is not None and cert.subject_uid == "CCCD:001203004005"

    def names(full_name: str, id_number: str | None = None) -> bool:
        return signing.names_officer(cert, Actor("x", full_name, id_number))

    assert names("Nguyễn Thị Ánh") and names("NGUYEN THI ANH") and names("nguyễn  thị  ánh")
    assert names("Trần Văn Bình", "001203004005")  # the CCCD in the subject UID
    assert names("Trần Văn Bình", "001 203 004 005")
    assert names("Trần Văn Bình", "123456789")  # the old CMND in the subject serialNumber
    assert not names("Trần Văn Bình", "079099000001")
    assert not names("Trần Văn Bình") and not names("")
    assert not names("Nguyễn Thị Anh Đào")
    assert signing.check_certificate([], ANH) is None
    assert signing.check_certificate([c for c in certs if c.role != "officer"], ANH) is None


def _bare_cert() -> CertInfo:
    """The identity parts of a certificate as the token reads them (for the ID-number rules)."""
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    return CertInfo(
        cka_id="01",
        label="officer",
        subject=f"CN={OFFICER_NAME},UID=CCCD:001203004005,2.5.4.5=CMND:123456789",
        common_name=OFFICER_NAME,
        organisation=ORG_NAME,
        issuer="CN=Test CA",
        serial="1f",
        not_before=now,
        not_after=now,
        days_to_expiry=1,
        key_usage=(),
        non_repudiation=True,
        is_ca=False,
        sha256="00",
        role="officer",
        subject_uid="CCCD:001203004005",
        subject_serial_number="CMND:123456789",
    )


@pytest.mark.parametrize("fragment", ["3004005", "4567", "1"], ids=["part-of-cccd", "part-of-cmnd", "one-digit"])
def test_a_part_of_an_id_number_does_not_name_the_officer(fragment: str) -> None:
    assert not signing.names_officer(_bare_cert(), Actor("binh.tv", "Trần Văn Bình", fragment))


def test_a_wrong_pin_leaves_every_document_reviewed(
    fresh_pair: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, fresh_pair)
    store = pipeline.storage(settings)
    ids = [_reviewed(store.factory, store.originals, tmp_path, kind=k) for k in (Kind.COMPONENT, Kind.RESULT)]
    with pytest.raises(PinIncorrect):
        signing.sign(store.factory, settings, actor=ANH, doc_ids=ids, pin="999999")
    assert _state(store.factory, ids) == ["reviewed", "reviewed"]
    assert _outbox_count(store.factory) == 0
    with db.transaction(store.factory) as session:
        for doc_id in ids:
            info = session.get(DocumentInfo, doc_id)
            assert info is not None and info.package_id is None and info.signed_path is None
            assert [e.action for e in trail(session, doc_id)][-1] == "review"
    assert not list((settings.data_dir / "signed").glob("*")) and not list((settings.data_dir / "packages").glob("*"))
    assert token_status(MODULE, fresh_pair.serial)[0].pin_state is PinState.COUNT_LOW


def test_a_corrections_package_names_the_package_it_supersedes(hsm: SoftToken, tmp_path: Path) -> None:
    settings = _settings(tmp_path, hsm)
    store = pipeline.storage(settings)
    old = _reviewed(store.factory, store.originals, tmp_path, kind=Kind.RESULT)
    (first,) = signing.sign(store.factory, settings, actor=ANH, doc_ids=[old], pin=hsm.pin).packages
    with db.transaction(store.factory) as session:
        assert delivery.receipt(session, package_id=first, accepted=True) == [old]
        new = documents.correct(session, actor=BINH, doc_id=old)
    with db.transaction(store.factory) as session:
        fields = {"trich_yeu": "Tài liệu result (đính chính)", "so_ky_hieu": "12/GCN"}
        review(session, new, actor=BINH, kind=Kind.RESULT, result_code=code(1), fields=fields)
    with pytest.raises(NotReadyToSign):  # the old version is superseded (and delivered): never signed again
        signing.sign(store.factory, settings, actor=ANH, doc_ids=[old], pin="999999")

    (second,) = signing.sign(store.factory, settings, actor=BINH, doc_ids=[new], pin=hsm.pin).packages

    assert second != first
    assert _state(store.factory, [old, new]) == ["delivered", "queued"]
    with db.transaction(store.factory) as session:
        item = outbox.get_item(session, package_id=second)
        queued = trail(session, new)[-1]
        assert queued.detail["supersedes"] == first and queued.detail["package_id"] == second
    manifest = _manifest(item.path)
    assert manifest["supersedes"] == first and manifest["result_code"] == code(1)
    audit_events = manifest["audit"]
    assert isinstance(audit_events, list) and {e["document_id"] for e in audit_events} == {new}
    assert [e["action"] for e in audit_events] == ["correct", "correct", "field", "review"]
    assert audit_events[0]["detail"] == {"supersedes": old, "version": 2, "package_superseded": first}
    assert audit_events[0]["actor"] == "binh.tv" and audit_events[0]["at"].endswith("+07:00")
    report = verify_package(Path(item.path).read_bytes(), [hsm.ca.pem])
    assert report.ok, report.all_problems
    assert report.supersedes == first and len(report.audit) == 4


def test_a_review_saved_while_the_token_signs_is_not_recorded_as_signed(
    hsm: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, hsm)
    store = pipeline.storage(settings)
    doc_id = _reviewed(store.factory, store.originals, tmp_path, kind=Kind.RESULT)
    real = signing.sign_and_package  # type: ignore[attr-defined]

    def meanwhile(*args: Any, **kwargs: Any) -> Any:
        done = real(*args, **kwargs)
        with db.transaction(store.factory) as session:  # another officer saves the review during the signing
            review(session, doc_id, actor=BINH, kind=Kind.RESULT, result_code=code(50))
        return done

    monkeypatch.setattr(signing, "sign_and_package", meanwhile)
    with contextlib.suppress(WorkflowError):  # refusing is one right answer
        signing.sign(store.factory, settings, actor=ANH, doc_ids=[doc_id], pin=hsm.pin)
    with db.transaction(store.factory) as session:
        loaded = documents.load(session, doc_id)
        assert loaded.info is not None
        if loaded.doc.state == S.QUEUED:  # recording it is the other, if what is recorded is what was signed
            item = outbox.get_item(session, package_id=loaded.info.package_id)
            assert _manifest(item.path)["result_code"] == loaded.info.result_code
