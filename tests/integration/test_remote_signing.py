"""Remote signing through a real CSC API v1 server on loopback (certomancer-csc-dummy, tests.csc): the same
core (appliance.signing), marks, packages and policy as the token; the batch is hashed first and approved
once; a restart during the wait completes it; a rejected or expired approval leaves nothing signed.

The server's CA is the tests' CA, so the signatures are checked exactly like the token's: pyHanko
(appliance verify) and poppler's pdfsig with an NSS database that trusts that CA.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from appliance import db, pipeline, remote_signing, roster, signing
from appliance.errors import RemoteResultNeedsToken, RemoteSigningBusy, RemoteSigningExpired, RemoteSigningRejected
from appliance.messages_vi import message_for
from appliance.records import DocumentInfo, Kind
from appliance.settings import Settings, load_settings
from appliance.sign.package import verify_package
from appliance.sign.policy import PSS
from appliance.workflow import Actor
from tests.csc import CscServer
from tests.integration.test_workflow import AGENCY, ANH, trail
from tests.integration.test_workflow_signing import _outbox_count, _reviewed, _state
from tests.softhsm import ORG_NAME, SoftToken, ca_sha256, pdfsig

pytestmark = [pytest.mark.slow]


def remote_settings(tmp_path: Path, token: SoftToken, providers: dict[str, dict[str, Any]]) -> Settings:
    """A box that trusts the tests' CA (the remote credentials are issued by it too) with these providers."""
    return load_settings(
        data_dir=tmp_path / "data",
        commune_code="12345",
        sign={
            "organisation_name": ORG_NAME,
            "agency_code": AGENCY,
            "trust_roots": [token.ca.pem],
            "trusted_root_sha256": [ca_sha256(token.ca)],
            "revocation_fetch": False,
        },
        remote={"providers": providers},
    )


def _settings(tmp_path: Path, token: SoftToken, server: CscServer) -> Settings:
    return remote_settings(tmp_path, token, {"csc-test": {"kind": "csc", "label": "CSC thử nghiệm", "url": server.url}})


def _profile(factory: sessionmaker[Session], actor: Actor, credential: str) -> None:
    with db.transaction(factory) as session:
        remote_signing.set_profile(
            session,
            username=actor.username,
            provider="csc-test",
            credential_id=credential,
            user_id=actor.id_number or "",
            known_providers={"csc-test"},
            by=actor.username,
        )


def _files(settings: Settings) -> list[Path]:
    return sorted(p for d in ("signed", "packages") for p in (settings.data_dir / d).glob("*") if p.is_file())


def test_a_batch_of_five_needs_one_approval_and_verifies_like_a_token_signature(
    shared_token: SoftToken, csc_server: CscServer, nssdb: Path, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, shared_token, csc_server)
    store = pipeline.storage(settings)
    docs = [_reviewed(store.factory, store.originals, tmp_path, kind=Kind.COMPONENT) for _ in range(5)]
    _profile(store.factory, ANH, csc_server.credential_id)

    pending = signing.start_remote(store.factory, settings, actor=ANH, doc_ids=docs)
    assert csc_server.count("credentials/authorize") == 0  # hashed first: nothing asked of the phone yet
    assert _state(store.factory, docs) == ["reviewed"] * 5
    with db.transaction(store.factory) as session:
        shown = signing.remote_state(session, txn_id=pending.id, username=ANH.username)
        assert shown is not None and shown.state == "waiting" and shown.documents == 5 and shown.seconds_left > 200
        txn = session.get(remote_signing.RemoteTransaction, pending.id)
        assert txn is not None and "SAD" not in str(txn.plan)

    signed = signing.continue_remote(store.factory, settings, pending.id)

    assert signed is not None and signed.documents == tuple(docs) and len(signed.packages) == 1
    assert csc_server.count("credentials/authorize") == 1  # one approval on the phone
    assert csc_server.count("signatures/signHash") == 2  # the 5 documents in one request, then their package
    assert _state(store.factory, docs) == ["queued"] * 5
    with db.transaction(store.factory) as session:
        for doc_id in docs:
            info = session.get(DocumentInfo, doc_id)
            assert info is not None and info.signed_path and info.cert_serial == f"{csc_server.cert.serial_number:x}"
            event = trail(session, doc_id)[-2]
            assert event.action == "signed" and event.detail["algorithm"] == PSS  # the credential offers PSS
            assert event.detail["trust_path"] and "Nguyễn Thị Ánh" in event.detail["certificate_subject"]
            report = signing.verify_signed(settings, Path(info.signed_path))
            assert report.ok, report.all_problems
            (sig,) = report.signatures
            assert sig.mark_position == "top-left" and "Người số hóa: Nguyễn Thị Ánh" in sig.mark_text
            assert sig.algorithm == PSS
            text = pdfsig(Path(info.signed_path), nssdb)
            assert "Signature is Valid" in text and "Certificate is Trusted" in text, text
        package = Path(settings.data_dir / "packages").glob("*.asice")
        (path,) = list(package)
        assert verify_package(path.read_bytes(), [shared_token.ca.pem]).ok
        assert remote_signing.pending(session) == []
        lines = roster.roster(session, officers=[(ANH.username, ANH.full_name)])
        assert lines[0].verdict == roster.VALID and lines[0].certificate is not None
        assert lines[0].certificate.signed and lines[0].certificate.pss is True
    assert _outbox_count(store.factory) == 1
    assert not (settings.data_dir / "remote" / pending.id).exists()


def test_a_restart_during_the_wait_completes_the_batch(
    shared_token: SoftToken, csc_server: CscServer, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, shared_token, csc_server)
    store = pipeline.storage(settings)
    docs = [_reviewed(store.factory, store.originals, tmp_path, kind=Kind.COMPONENT) for _ in range(2)]
    _profile(store.factory, ANH, csc_server.credential_id)
    pending = signing.start_remote(store.factory, settings, actor=ANH, doc_ids=docs)
    with pytest.raises(RemoteSigningBusy):  # one batch at a time per officer
        signing.start_remote(store.factory, settings, actor=ANH, doc_ids=docs)
    store.factory.kw["bind"].dispose()  # the box restarts: nothing survives but the database and data_dir

    after = pipeline.storage(settings)
    assert signing.resume_remote(after.factory, settings) == [pending.id]

    assert _state(after.factory, docs) == ["queued", "queued"]
    assert csc_server.count("credentials/authorize") == 1
    with db.transaction(after.factory) as session:
        done = signing.remote_state(session, txn_id=pending.id, username=ANH.username)
        assert done is not None and done.state == "done"


@pytest.mark.parametrize(("answer", "error"), [("reject", RemoteSigningRejected), ("expire", RemoteSigningExpired)])
def test_a_rejected_or_expired_approval_leaves_nothing_signed(
    shared_token: SoftToken, csc_server: CscServer, tmp_path: Path, answer: str, error: type[Exception]
) -> None:
    settings = _settings(tmp_path, shared_token, csc_server)
    store = pipeline.storage(settings)
    docs = [_reviewed(store.factory, store.originals, tmp_path, kind=Kind.COMPONENT) for _ in range(3)]
    _profile(store.factory, ANH, csc_server.credential_id)
    pending = signing.start_remote(store.factory, settings, actor=ANH, doc_ids=docs)
    csc_server.phone.answer = answer

    with pytest.raises(error) as caught:
        signing.continue_remote(store.factory, settings, pending.id)

    assert "Không tài liệu nào" in message_for(caught.value)
    assert csc_server.count("signatures/signHash") == 0
    assert _state(store.factory, docs) == ["reviewed"] * 3
    assert _files(settings) == [] and _outbox_count(store.factory) == 0
    assert not (settings.data_dir / "remote" / pending.id).exists()
    with db.transaction(store.factory) as session:
        state = signing.remote_state(session, txn_id=pending.id, username=ANH.username)
        assert state is not None and state.state == "failed" and state.error_code == caught.value.code  # type: ignore[attr-defined]
        assert {s.id for s in signing.ready(session, actor=ANH)} == set(docs)  # still waiting to be signed
    csc_server.phone.answer = "approve"  # and the officer can sign them again
    again = signing.start_remote(store.factory, settings, actor=ANH, doc_ids=docs)
    assert signing.continue_remote(store.factory, settings, again.id) is not None


def test_results_stay_on_the_token_and_the_roster_sees_an_expiring_credential(
    shared_token: SoftToken, csc_server: CscServer, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, shared_token, csc_server)
    store = pipeline.storage(settings)
    result = _reviewed(store.factory, store.originals, tmp_path, kind=Kind.RESULT)
    _profile(store.factory, ANH, "box/expiring")
    with pytest.raises(RemoteResultNeedsToken):
        signing.start_remote(store.factory, settings, actor=ANH, doc_ids=[result])
    component = _reviewed(store.factory, store.originals, tmp_path, kind=Kind.COMPONENT)
    signing.start_remote(store.factory, settings, actor=ANH, doc_ids=[component])  # presented: in the roster
    with db.transaction(store.factory) as session:
        lines = roster.roster(session, officers=[(ANH.username, ANH.full_name), ("binh.tv", "Trần Văn Bình")])
    assert [(line.username, line.label) for line in lines] == [
        ("anh.nt", "sắp hết hạn"),
        ("binh.tv", "chưa có"),
        ("", "chưa có"),
    ]
    assert lines[0].days_left is not None and 8 <= lines[0].days_left <= 10


def test_the_officer_page_waits_for_the_phone_and_the_supervisor_sees_the_roster(
    shared_token: SoftToken, csc_server: CscServer, tmp_path: Path
) -> None:
    """The web UI: the officer sets the provider, signs without a PIN, sees "chờ xác nhận trên điện thoại"
    with the time left until the phone answers; the supervisor's "Chứng thư số cán bộ" lists the verdicts."""
    import time

    from fastapi.testclient import TestClient

    from appliance.web.app import create_app
    from appliance.web.auth import create_user
    from appliance.web.models import Role
    from tests.integration.conftest import OFFICER_PW, SUPER_PW
    from tests.integration.test_web import _csrf, login

    settings = _settings(tmp_path, shared_token, csc_server)
    app = create_app(settings, resume=False)
    factory = app.state.ctx.factory
    with db.transaction(factory) as session:
        create_user(session, username="anh.nt", full_name=ANH.full_name, role=Role.OFFICER, password=OFFICER_PW)
        create_user(session, username="lanhdao", full_name="Trần Văn B", role=Role.SUPERVISOR, password=SUPER_PW)
    store = pipeline.storage(settings)
    docs = [_reviewed(store.factory, store.originals, tmp_path, kind=Kind.COMPONENT) for _ in range(2)]
    csc_server.phone.hold.clear()  # the officer has not looked at the phone yet
    with TestClient(app, raise_server_exceptions=False) as c:
        csrf = login(c, "anh.nt", OFFICER_PW)
        r = c.post(
            "/sign/remote-profile",
            data={"csrf": csrf, "provider": "csc-test", "credential_id": csc_server.credential_id, "user_id": ""},
            follow_redirects=False,
        )
        assert r.status_code == 303
        page = c.get("/sign").text
        assert 'id="remote-provider"' in page and 'name="pin"' not in page
        r = c.post("/sign", data={"csrf": _csrf(page), "doc": docs, "via": "remote"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/sign/remote/")
        waiting = c.get(r.headers["location"]).text
        assert "chờ xác nhận trên điện thoại" in waiting and "Thời gian còn lại" in waiting
        csc_server.phone.hold.set()  # approved on the phone
        for _ in range(100):
            shown = c.get(r.headers["location"]).text
            if "Đã ký số" in shown:
                break
            time.sleep(0.1)
        assert "Đã ký số 2 tài liệu" in shown
        assert _state(factory, docs) == ["queued", "queued"]
        c.post("/logout", data={"csrf": _csrf(shown)})
        c.cookies.clear()
        login(c, "lanhdao", SUPER_PW)
        roster_page = c.get("/certificates").text
        assert "Chứng thư số cán bộ" in roster_page
        assert 'data-username="anh.nt"' in roster_page and "hợp lệ" in roster_page
        assert "chưa có" in roster_page  # the supervisor's own, and the organisation's
        assert c.get("/certificates").status_code == 200
