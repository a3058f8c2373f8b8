"""A small local stand-in for VNPT SmartCA and Viettel MySign, for the remote-signing tests: their services
cannot be reached from here, so this server speaks the request/response shapes the reference documents
(law-and-anchors-2026.md §2.1) and nothing more, and signs with a real RSA-2048 key whose certificate the
tests' CA issued (tests.softhsm), so what comes back verifies like the token's signatures.

SmartCA (`/sca/sp769/v1`): `credentials/get_certificate`, `signatures/sign`, `signatures/sign/{id}/status`
(message SUCCESS / REJECTED / EXPIRED / TIMEOUT / CANCELLED; "WAITING" while the phone is silent, a word
the reference does not give). MySign (`/vtss/service`): `ras/v1/login` (a bearer token), `certificates/info`,
`signHash` (async 1), `requests/status` (1, 4000, 4001, 4002, 4004, 4005, 6000, 13004). Partner credentials
and the bearer token are checked; a wrong one is HTTP 401.

`phone` plays the officer: `hold` cleared = nobody has looked at the phone yet (status: waiting); set =
answer with `answer` ("approve", or a final state). Every request is kept in `requests` (path, JSON body).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from tests.softhsm import OFFICER, CertSpec, TestCa, issue

SP_ID, SP_PASSWORD = "sp-test", "sp-secret-not-for-logs"
CLIENT_ID, CLIENT_SECRET, PROFILE_ID = "box-client", "client-secret-not-for-logs", "adss:ras:profile:001"
SMARTCA_USER, MYSIGN_USER = "001203004005", "CMT_001203004005"
# What each final answer is called by each vendor (None: the vendor has no such answer)
SMARTCA_ANSWERS = {"approve": "SUCCESS", "reject": "REJECTED", "expire": "EXPIRED", "timeout": "TIMEOUT"}
MYSIGN_ANSWERS = {"approve": 1, "reject": 4002, "timeout": 4001, "failed": 4004, "quota": 4005, "revoked": 13004}
WAITING = {"smartca": "WAITING", "mysign": 4000}


@dataclass
class Phone:
    answer: str = "approve"
    hold: threading.Event = field(default_factory=threading.Event)  # set = the officer has answered

    def __post_init__(self) -> None:
        self.hold.set()


@dataclass
class VendorServer:
    url: str
    cert: x509.Certificate
    key: rsa.RSAPrivateKey
    phone: Phone
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    transactions: dict[str, list[bytes]] = field(default_factory=dict)  # id -> hashes to sign
    polled: threading.Event = field(default_factory=threading.Event)  # a status request arrived
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    def count(self, endpoint: str) -> int:
        return sum(1 for path, _ in self.requests if path.endswith(endpoint))

    def bodies(self, endpoint: str) -> list[dict[str, Any]]:
        return [body for path, body in self.requests if path.endswith(endpoint)]

    def sign(self, digest: bytes) -> str:
        raw = self.key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        return base64.b64encode(raw).decode()

    # --- VNPT SmartCA ---------------------------------------------------------------------------------
    def smartca(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if body.get("sp_id") != SP_ID or body.get("sp_password") != SP_PASSWORD:
            return 401, {"status_code": 401, "message": "unauthorized"}
        if path == "credentials/get_certificate":
            if body.get("user_id") != SMARTCA_USER:
                return 200, {"status_code": 200, "message": "success", "data": {"user_certificates": []}}
            der = self.cert.public_bytes(serialization.Encoding.DER)
            item = {
                "cert_id": "cert-1",
                "serial_number": f"{self.cert.serial_number:x}",
                "cert_subject": self.cert.subject.rfc4514_string(),
                "cert_valid_from": self.cert.not_valid_before_utc.isoformat(),
                "cert_valid_to": self.cert.not_valid_after_utc.isoformat(),
                "cert_status": "Đang hoạt động",
                "cert_data": base64.b64encode(der).decode(),
            }
            return 200, {"status_code": 200, "message": "success", "data": {"user_certificates": [item]}}
        if path == "signatures/sign":
            files = body.get("sign_files") or []
            tid = str(uuid.uuid4())
            self.transactions[tid] = [bytes.fromhex(f["data_to_be_signed"]) for f in files]
            return 200, {"status_code": 200, "message": "success", "data": {"transaction_id": tid, "expired_in": 300}}
        if path.startswith("signatures/sign/") and path.endswith("/status"):
            tid = path.split("/")[2]
            self.polled.set()
            if tid not in self.transactions:
                return 404, {"status_code": 404, "message": "not found"}
            if not self.phone.hold.is_set():
                return 200, {"status_code": 200, "message": WAITING["smartca"]}
            message = SMARTCA_ANSWERS[self.phone.answer]
            if message != "SUCCESS":
                return 200, {"status_code": 200, "message": message}
            signatures = [
                {"doc_id": str(i), "signature_value": self.sign(h)} for i, h in enumerate(self.transactions[tid])
            ]
            return 200, {"status_code": 200, "message": "SUCCESS", "data": {"signatures": signatures}}
        return 404, {}

    # --- Viettel MySign --------------------------------------------------------------------------------
    def mysign(self, path: str, body: dict[str, Any], bearer: str) -> tuple[int, Any]:
        if path == "ras/v1/login":
            if (body.get("client_id"), body.get("client_secret"), body.get("profile_id")) != (
                CLIENT_ID,
                CLIENT_SECRET,
                PROFILE_ID,
            ) or body.get("user_id") != MYSIGN_USER:
                return 401, {"error": "unauthorized"}
            return 200, {"access_token": self.token, "token_type": "Bearer", "expires_in": 3600}
        if bearer != self.token:
            return 401, {"error": "unauthorized"}
        if path == "certificates/info":
            chain = [self.cert.public_bytes(serialization.Encoding.DER)]
            return 200, [
                {
                    "credential_id": "mysign-cred-1",
                    "key": {"algo": ["1.2.840.113549.1.1.1"], "len": 2048},
                    "cert": {
                        "certificates": [base64.b64encode(c).decode() for c in chain],
                        "subjectDN": self.cert.subject.rfc4514_string(),
                        "validFrom": self.cert.not_valid_before_utc.isoformat(),
                        "validTo": self.cert.not_valid_after_utc.isoformat(),
                    },
                    "authMode": "implicit",
                    "multisign": 50,
                    "scal": "2",
                }
            ]
        if path == "signHash":
            if body.get("async") != 1 or body.get("numSignatures") != len(body.get("hash") or []):
                return 400, {"error": "bad request"}
            tid = str(uuid.uuid4())
            self.transactions[tid] = [base64.b64decode(h) for h in body["hash"]]
            return 200, {"transactionId": tid}
        if path == "requests/status":
            tid = str(body.get("transactionId"))
            self.polled.set()
            if tid not in self.transactions:
                return 404, {"error": "not found"}
            if not self.phone.hold.is_set():
                return 200, {"status": WAITING["mysign"]}
            status = MYSIGN_ANSWERS[self.phone.answer]
            if status != 1:
                return 200, {"status": status}
            return 200, {"status": 1, "signatures": [self.sign(h) for h in self.transactions[tid]]}
        return 404, {}


def _handler(server: VendorServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            pass

        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            server.requests.append((self.path, body))
            bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            if self.path.startswith("/sca/sp769/v1/"):
                status, answer = server.smartca(self.path.removeprefix("/sca/sp769/v1/"), body)
            elif self.path.startswith("/vtss/service/"):
                status, answer = server.mysign(self.path.removeprefix("/vtss/service/"), body, bearer)
            else:
                status, answer = 404, {}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def vendor_server(shared_token: Any) -> Iterator[VendorServer]:
    """Both vendors' shapes on one loopback port, signing as the officer (a key made here, certificate from
    the tests' CA)."""
    ca: TestCa = shared_token.ca
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    spec = CertSpec(cka_id="11", label="vendor", common_name=OFFICER.common_name)
    cert = issue(ca, key.public_key(), spec)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = VendorServer(f"http://127.0.0.1:{httpd.server_address[1]}", cert, key, Phone())
    httpd.RequestHandlerClass = _handler(state)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.phone.hold.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
