"""Remote signing through VNPT SmartCA and Viettel MySign, against the local server that speaks their documented
shapes (tests.vendor_server; the real services cannot be reached from here): the same core as the token and
as CSC (appliance.signing), one sign request for a batch of documents, waiting until the phone answers,
a restart (the process killed with SIGKILL during the wait) that polls the same transaction instead of
sending another, and final answers that leave nothing signed. Signatures are checked like the token's:
pyHanko (appliance verify) and poppler's pdfsig with an NSS database that trusts the tests' CA.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from appliance import db, pipeline, remote_signing, roster, signing
from appliance.errors import (
    RemoteCertificateRefused,
    RemoteSigningExpired,
    RemoteSigningFailed,
    RemoteSigningNotConfigured,
    RemoteSigningQuota,
    RemoteSigningRejected,
    RemoteSigningTimeout,
)
from appliance.messages_vi import MESSAGES_VI, message_for
from appliance.records import DocumentInfo, Kind
from appliance.settings import Settings
from appliance.sign.package import verify_package
from appliance.sign.policy import PKCS1
from tests.integration.test_remote_signing import remote_settings
from tests.integration.test_workflow import ANH, trail
from tests.integration.test_workflow_signing import _outbox_count, _reviewed, _state
from tests.softhsm import SoftToken, pdfsig
from tests.vendor_server import (
    CLIENT_ID,
    CLIENT_SECRET,
    MYSIGN_USER,
    PROFILE_ID,
    SMARTCA_USER,
    SP_ID,
    SP_PASSWORD,
    VendorServer,
    vendor_server,  # noqa: F401 - the fixture
)

pytestmark = [pytest.mark.slow]


@dataclass(frozen=True)
class Vendor:
    name: str
    provider: dict[str, Any]  # settings.remote.providers entry, without the url
    credential_id: str
    user_id: str
    sign: str  # the sign request's endpoint
    status: str  # the status endpoint (its last part)

    def hashes(self, body: dict[str, Any]) -> int:
        return len(body["sign_files"] if self.name == "smartca" else body["hash"])


SMARTCA = Vendor(
    "smartca",
    {"kind": "vnpt_smartca", "label": "VNPT SmartCA", "client_id": SP_ID, "client_secret": SP_PASSWORD},
    "",  # the first certificate SmartCA lists for the officer's CCCD
    SMARTCA_USER,
    "signatures/sign",
    "/status",
)
MYSIGN = Vendor(
    "mysign",
    {
        "kind": "viettel_mysign",
        "label": "Viettel MySign",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "profile_id": PROFILE_ID,
    },
    "mysign-cred-1",
    MYSIGN_USER,
    "signHash",
    "requests/status",
)
VENDORS = [pytest.param(SMARTCA, id="smartca"), pytest.param(MYSIGN, id="mysign")]
SECRETS = (SP_PASSWORD, CLIENT_SECRET)


def _settings(tmp_path: Path, token: SoftToken, server: VendorServer, vendor: Vendor) -> Settings:
    provider = {**vendor.provider, "url": server.url, "poll_interval_s": 0.05}
    return remote_settings(tmp_path, token, {vendor.name: provider})


def _ready(
    tmp_path: Path, token: SoftToken, server: VendorServer, vendor: Vendor, documents: int
) -> tuple[Settings, pipeline.Storage, list[str]]:
    """A box with the officer's profile for `vendor` and `documents` reviewed components to sign."""
    settings = _settings(tmp_path, token, server, vendor)
    store = pipeline.storage(settings)
    docs = [_reviewed(store.factory, store.originals, tmp_path, kind=Kind.COMPONENT) for _ in range(documents)]
    _profile(store.factory, vendor)
    return settings, store, docs


def _profile(factory: sessionmaker[Session], vendor: Vendor) -> None:
    with db.transaction(factory) as session:
        remote_signing.set_profile(
            session,
            username=ANH.username,
            provider=vendor.name,
            credential_id=vendor.credential_id,
            user_id=vendor.user_id,
            known_providers={vendor.name},
            by=ANH.username,
        )


def _files(settings: Settings) -> list[Path]:
    return sorted(p for d in ("signed", "packages") for p in (settings.data_dir / d).glob("*") if p.is_file())


def _sign_requests(server: VendorServer, vendor: Vendor) -> list[int]:
    """How many hashes each sign request carried, in order."""
    return [vendor.hashes(b) for p, b in server.requests if p.endswith(vendor.sign)]


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_batch_is_one_request_waits_for_the_phone_and_verifies_like_a_token_signature(
    shared_token: SoftToken,
    vendor_server: VendorServer,  # noqa: F811
    nssdb: Path,
    tmp_path: Path,
    vendor: Vendor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings, store, docs = _ready(tmp_path, shared_token, vendor_server, vendor, 4)
    vendor_server.phone.hold.clear()  # the officer has not looked at the phone yet

    pending = signing.start_remote(store.factory, settings, actor=ANH, doc_ids=docs)
    assert _sign_requests(vendor_server, vendor) == []  # hashed first: nothing sent to the phone yet
    out: list[signing.Signed | None] = []
    waiting = threading.Thread(target=lambda: out.append(signing.continue_remote(store.factory, settings, pending.id)))
    waiting.start()
    try:
        assert vendor_server.polled.wait(60), "the status was never polled"
        assert _sign_requests(vendor_server, vendor) == [4]  # the 4 documents in one request
        assert _state(store.factory, docs) == ["reviewed"] * 4
        with db.transaction(store.factory) as session:
            shown = signing.remote_state(session, txn_id=pending.id, username=ANH.username)
            assert shown is not None and shown.state == "waiting" and shown.seconds_left > 0
            assert (shown.confirmations, shown.step) == (2, 1)  # the documents now, their package next
            txn = session.get(remote_signing.RemoteTransaction, pending.id)
            assert txn is not None and txn.provider_ref in vendor_server.transactions
            stored = str(txn.plan)
            assert not any(s in stored for s in (*SECRETS, vendor_server.token))
    finally:
        vendor_server.phone.hold.set()  # confirmed on the phone
        waiting.join(120)
    assert not waiting.is_alive()

    (signed,) = out
    assert signed is not None and signed.documents == tuple(docs) and len(signed.packages) == 1
    assert _sign_requests(vendor_server, vendor) == [4, 1]  # then the package, which names the signed PDFs
    assert _state(store.factory, docs) == ["queued"] * 4
    with db.transaction(store.factory) as session:
        for doc_id in docs:
            info = session.get(DocumentInfo, doc_id)
            assert info is not None and info.signed_path
            assert info.cert_serial == f"{vendor_server.cert.serial_number:x}"
            event = trail(session, doc_id)[-2]
            assert event.action == "signed" and event.detail["algorithm"] == PKCS1  # the only documented signAlgo
            assert event.detail["algorithm_fallback"] == "token_without_pss"  # recorded, as for a token
            assert event.detail["trust_path"] and "Nguyễn Thị Ánh" in event.detail["certificate_subject"]
            report = signing.verify_signed(settings, Path(info.signed_path))
            assert report.ok, report.all_problems
            (sig,) = report.signatures
            assert sig.mark_position == "top-left" and "Người số hóa: Nguyễn Thị Ánh" in sig.mark_text
            text = pdfsig(Path(info.signed_path), nssdb)
            assert "Signature is Valid" in text and "Certificate is Trusted" in text, text
        (package,) = list((settings.data_dir / "packages").glob("*.asice"))
        assert verify_package(package.read_bytes(), [shared_token.ca.pem]).ok
        assert remote_signing.pending(session) == []
        lines = roster.roster(session, officers=[(ANH.username, ANH.full_name)])
        assert lines[0].verdict == roster.VALID and lines[0].certificate is not None and lines[0].certificate.signed
    assert _outbox_count(store.factory) == 1
    assert not (settings.data_dir / "remote" / pending.id).exists()
    assert not any(s in caplog.text for s in (*SECRETS, vendor_server.token))  # never logged


def _continue_then_die(settings: Settings, txn_id: str) -> None:
    """The box's process: continues the batch and is killed while it waits for the phone."""
    store = pipeline.storage(settings)
    signing.continue_remote(store.factory, settings, txn_id)


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_restart_during_the_wait_polls_the_same_transaction(
    shared_token: SoftToken,
    vendor_server: VendorServer,  # noqa: F811
    tmp_path: Path,
    vendor: Vendor,
) -> None:
    settings, store, docs = _ready(tmp_path, shared_token, vendor_server, vendor, 3)
    pending = signing.start_remote(store.factory, settings, actor=ANH, doc_ids=docs)
    vendor_server.phone.hold.clear()
    box = multiprocessing.get_context("fork").Process(target=_continue_then_die, args=(settings, pending.id))
    box.start()
    try:
        assert vendor_server.polled.wait(60), "the box never polled"
    finally:
        os.kill(box.pid or 0, signal.SIGKILL)  # power cut while the officer reaches for the phone
        box.join(30)
    assert box.exitcode == -signal.SIGKILL
    with db.transaction(store.factory) as session:
        txn = session.get(remote_signing.RemoteTransaction, pending.id)
        assert txn is not None and txn.state == remote_signing.WAITING
        (sent,) = vendor_server.transactions
        assert txn.provider_ref == sent
    assert _state(store.factory, docs) == ["reviewed"] * 3 and _files(settings) == []
    store.factory.kw["bind"].dispose()

    vendor_server.phone.hold.set()  # the officer confirms while the box restarts
    after = pipeline.storage(settings)
    assert signing.resume_remote(after.factory, settings) == [pending.id]

    assert _state(after.factory, docs) == ["queued"] * 3
    assert _sign_requests(vendor_server, vendor) == [3, 1]  # the documents were not sent a second time
    with db.transaction(after.factory) as session:
        done = signing.remote_state(session, txn_id=pending.id, username=ANH.username)
        assert done is not None and done.state == "done"
        for doc_id in docs:
            info = session.get(DocumentInfo, doc_id)
            assert info is not None and info.signed_path
            assert signing.verify_signed(settings, Path(info.signed_path)).ok


@pytest.mark.parametrize(
    ("vendor", "answer", "error"),
    [
        pytest.param(SMARTCA, "reject", RemoteSigningRejected, id="smartca-REJECTED"),
        pytest.param(SMARTCA, "expire", RemoteSigningExpired, id="smartca-EXPIRED"),
        pytest.param(SMARTCA, "timeout", RemoteSigningTimeout, id="smartca-TIMEOUT"),
        pytest.param(MYSIGN, "reject", RemoteSigningRejected, id="mysign-4002"),
        pytest.param(MYSIGN, "timeout", RemoteSigningTimeout, id="mysign-4001"),
        pytest.param(MYSIGN, "failed", RemoteSigningFailed, id="mysign-4004"),
        pytest.param(MYSIGN, "quota", RemoteSigningQuota, id="mysign-4005"),
        pytest.param(MYSIGN, "revoked", RemoteCertificateRefused, id="mysign-13004"),
    ],
)
def test_a_final_answer_other_than_success_leaves_nothing_signed(
    shared_token: SoftToken,
    vendor_server: VendorServer,  # noqa: F811
    tmp_path: Path,
    vendor: Vendor,
    answer: str,
    error: type[Exception],
) -> None:
    settings, store, docs = _ready(tmp_path, shared_token, vendor_server, vendor, 2)
    pending = signing.start_remote(store.factory, settings, actor=ANH, doc_ids=docs)
    vendor_server.phone.answer = answer

    with pytest.raises(error) as caught:
        signing.continue_remote(store.factory, settings, pending.id)

    sentence = message_for(caught.value)
    assert sentence != MESSAGES_VI["unknown"] and sentence == MESSAGES_VI[caught.value.code]  # type: ignore[attr-defined]
    assert _sign_requests(vendor_server, vendor) == [2]  # asked once, answered with a final state
    assert _state(store.factory, docs) == ["reviewed"] * 2
    assert _files(settings) == [] and _outbox_count(store.factory) == 0
    assert not (settings.data_dir / "remote" / pending.id).exists()
    with db.transaction(store.factory) as session:
        state = signing.remote_state(session, txn_id=pending.id, username=ANH.username)
        assert state is not None and state.state == "failed" and state.error_code == caught.value.code  # type: ignore[attr-defined]
        assert {s.id for s in signing.ready(session, actor=ANH)} == set(docs)  # still waiting to be signed


def test_a_signature_that_does_not_verify_with_the_certificate_is_not_embedded(
    shared_token: SoftToken,
    vendor_server: VendorServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A provider answering with something other than a raw signature by the credential's key (a CMS blob,
    another key) ends the batch: nothing signed."""
    settings, store, docs = _ready(tmp_path, shared_token, vendor_server, MYSIGN, 2)
    pending = signing.start_remote(store.factory, settings, actor=ANH, doc_ids=docs)
    vendor_server.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    with pytest.raises(RemoteSigningFailed):
        signing.continue_remote(store.factory, settings, pending.id)

    assert _state(store.factory, docs) == ["reviewed"] * 2 and _files(settings) == []


@pytest.mark.parametrize("vendor", VENDORS)
def test_wrong_partner_credentials_are_refused_before_anything_is_hashed(
    shared_token: SoftToken,
    vendor_server: VendorServer,  # noqa: F811
    tmp_path: Path,
    vendor: Vendor,
) -> None:
    settings = _settings(tmp_path, shared_token, vendor_server, vendor)
    conf = settings.remote.providers[vendor.name]
    settings.remote.providers[vendor.name] = conf.model_copy(update={"client_secret": SecretStr("wrong")})
    store = pipeline.storage(settings)
    docs = [_reviewed(store.factory, store.originals, tmp_path, kind=Kind.COMPONENT)]
    _profile(store.factory, vendor)

    with pytest.raises(RemoteSigningNotConfigured) as caught:
        signing.start_remote(store.factory, settings, actor=ANH, doc_ids=docs)

    assert "wrong" not in str(caught.value)
    with db.transaction(store.factory) as session:
        assert remote_signing.pending(session) == []


def test_the_officer_page_tells_of_two_confirmations_on_the_phone(
    shared_token: SoftToken,
    vendor_server: VendorServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The web UI with a vendor: the officer picks MySign in their profile, signs without a PIN and is told
    to expect two confirmations (the documents, then their package) until the batch is signed."""
    import time

    from fastapi.testclient import TestClient

    from appliance.web.app import create_app
    from appliance.web.auth import create_user
    from appliance.web.models import Role
    from tests.integration.conftest import OFFICER_PW
    from tests.integration.test_web import _csrf, login

    settings = _settings(tmp_path, shared_token, vendor_server, MYSIGN)
    app = create_app(settings, resume=False)
    factory = app.state.ctx.factory
    with db.transaction(factory) as session:
        create_user(session, username=ANH.username, full_name=ANH.full_name, role=Role.OFFICER, password=OFFICER_PW)
    store = pipeline.storage(settings)
    docs = [_reviewed(store.factory, store.originals, tmp_path, kind=Kind.COMPONENT) for _ in range(2)]
    vendor_server.phone.hold.clear()
    with TestClient(app, raise_server_exceptions=False) as c:
        csrf = login(c, ANH.username, OFFICER_PW)
        form = {"csrf": csrf, "provider": MYSIGN.name, "credential_id": "", "user_id": MYSIGN_USER}
        assert c.post("/sign/remote-profile", data=form, follow_redirects=False).status_code == 303
        page = c.get("/sign").text
        assert "Viettel MySign" in page and 'name="pin"' not in page
        r = c.post("/sign", data={"csrf": _csrf(page), "doc": docs, "via": "remote"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/sign/remote/")
        assert vendor_server.polled.wait(60)
        waiting = c.get(r.headers["location"]).text
        assert "chờ xác nhận trên điện thoại" in waiting and "hai lần xác nhận" in waiting
        assert "Đang chờ lần 1" in waiting
        vendor_server.phone.hold.set()
        for _ in range(300):
            shown = c.get(r.headers["location"]).text
            if "Đã ký số" in shown:
                break
            time.sleep(0.1)
        assert "Đã ký số 2 tài liệu" in shown
    assert _state(factory, docs) == ["queued", "queued"]
