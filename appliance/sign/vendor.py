"""VNPT SmartCA and Viettel MySign: remote signing services that are CSC-like but not CSC.

No official API document of either is public; the request and response shapes followed here are the ones
integrators' code shows (reference law-and-anchors-2026.md §2.1), and docs/signing.md lists every point
where that reference is silent and what this adapter does there. Both work the same way, which is the
shared part below (`VendorBatch`): send every hash of a round in one request, store the provider's
transaction id, poll its status until the officer confirms on the phone, then check each raw signature
against the certificate and wrap it into the same CMS as the token's (appliance.sign.remote.cms_from_raw).
A restart that finds the transaction id stored polls it again instead of sending a second request.

Each adapter only maps its shapes: `find_credential` (the certificate list), `submit` (the sign request)
and `status` (one poll, answered as a `Poll`). Partner secrets (SmartCA sp_password, MySign client_secret)
and MySign's bearer token live in memory only and never reach a log line or an error.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import SecretStr

from appliance.errors import (
    RemoteCertificateRefused,
    RemoteSigningExpired,
    RemoteSigningFailed,
    RemoteSigningNotConfigured,
    RemoteSigningQuota,
    RemoteSigningRejected,
    RemoteSigningTimeout,
    SignError,
)
from appliance.sign.remote import Credential, RemoteBatch, cms_from_raw, post_json

log = logging.getLogger(__name__)

SHA256_OID = "2.16.840.1.101.3.4.2.1"
RSA_OID = "1.2.840.113549.1.1.1"  # the only signAlgo the reference shows: RSA with PKCS#1 v1.5 padding
# What a vendor credential can sign through these adapters: the documented RSA PKCS#1 v1.5 only (RSASSA-PSS
# at either vendor is unconfirmed, so the policy records the fallback or, under "require", refuses).
VENDOR_ALGORITHMS = ("sha256_rsa",)


@dataclass(frozen=True, slots=True)
class Poll:
    """One status answer: still waiting (`signatures` None) or signed (one raw value per hash, in order)."""

    signatures: tuple[bytes, ...] | None = None


class VendorClient(Protocol):
    request_timeout_s: float
    poll_interval_s: float

    def find_credential(self, credential_id: str, user_id: str) -> Credential: ...

    def submit(self, credential: Credential, user_id: str, hashes: Sequence[bytes], names: Sequence[str]) -> str: ...

    def status(self, credential: Credential, user_id: str, ref: str) -> Poll: ...


class VendorBatch:
    """A batch on a vendor credential: each round is one sign request (one confirmation on the phone) with
    every hash of the round, polled until it ends or the batch's deadline passes."""

    def __init__(
        self,
        client: VendorClient,
        credential: Credential,
        algorithm: str,
        *,
        user_id: str,
        extra_chain: Sequence[bytes],
        deadline: dt.datetime,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client, self.credential, self.algorithm, self.user_id = client, credential, algorithm, user_id
        self.extra_chain, self.deadline, self._sleep = tuple(extra_chain), deadline, sleep

    def sign(
        self,
        stage: str,
        signed_attrs: Sequence[bytes],
        *,
        ref: str | None,
        submitted: Callable[[str], None],
        tsa_url: str | None,
    ) -> list[bytes]:
        if not signed_attrs:
            return []
        if ref is None:
            if self._left() <= 0:
                raise RemoteSigningExpired(f"the batch was not approved in time ({stage})")
            hashes = [hashlib.sha256(a).digest() for a in signed_attrs]
            names = [f"{stage}-{i + 1}" for i in range(len(hashes))]
            ref = self.client.submit(self.credential, self.user_id, hashes, names)
            submitted(ref)
            log.info("remote %s: %d hash(es) sent in one request, waiting for the phone", stage, len(hashes))
        while True:
            poll = self.client.status(self.credential, self.user_id, ref)
            if poll.signatures is not None:
                break
            left = self._left()
            if left <= 0:
                raise RemoteSigningTimeout(f"no answer from the phone before the batch's deadline ({stage})")
            self._sleep(min(self.client.poll_interval_s, left))
        if len(poll.signatures) != len(signed_attrs):
            raise RemoteSigningFailed(
                f"the provider returned {len(poll.signatures)} signature(s) for {len(signed_attrs)} hash(es)"
            )
        return [
            cms_from_raw(self.credential, self.algorithm, attrs, raw, extra_chain=self.extra_chain, tsa_url=tsa_url)
            for attrs, raw in zip(signed_attrs, poll.signatures, strict=True)
        ]

    def _left(self) -> float:
        return (self.deadline - dt.datetime.now(dt.UTC)).total_seconds()


class _Service:
    """What both adapters share: the batch, and one POST with the vendor's own error mapping."""

    request_timeout_s: float
    poll_interval_s: float

    def batch(
        self,
        credential: Credential,
        algorithm: str,
        *,
        user_id: str,
        extra_chain: Sequence[bytes],
        total: int,
        deadline: dt.datetime,
    ) -> RemoteBatch:
        client: VendorClient = self  # type: ignore[assignment]
        return VendorBatch(client, credential, algorithm, user_id=user_id, extra_chain=extra_chain, deadline=deadline)

    def _post(self, url: str, body: dict[str, Any], stage: str, headers: dict[str, str] | None = None) -> Any:
        return post_json(url, body, stage=stage, timeout_s=self.request_timeout_s, headers=headers, refused=_refused)


def _refused(status: int, body: dict[str, Any], stage: str) -> SignError:
    """An HTTP error from a vendor (their bodies carry no documented error codes: only the status is read)."""
    if status in (401, 403):
        return RemoteSigningNotConfigured(f"the provider refused the partner credentials: HTTP {status} ({stage})")
    return RemoteSigningFailed(f"the provider answered HTTP {status} ({stage})")


def _b64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except ValueError as err:
        raise RemoteSigningFailed(f"{what} is not base64") from err


def _credential(
    credential_id: str, cert_der: bytes, chain: Sequence[bytes], scal: int = 1, multisign: int = 1
) -> Credential:
    return Credential(credential_id, cert_der, tuple(chain), VENDOR_ALGORITHMS, scal, multisign)


# --- VNPT SmartCA ----------------------------------------------------------------------------------------
SMARTCA_PREFIX = "/sca/sp769/v1"
_SMARTCA_OK = {0, 200}
_SMARTCA_ENDS: dict[str, type[SignError]] = {
    "EXPIRED": RemoteSigningExpired,
    "REJECTED": RemoteSigningRejected,
    "CANCELLED": RemoteSigningRejected,
    "TIMEOUT": RemoteSigningTimeout,
}


class SmartCaClient(_Service):
    """VNPT SmartCA (`/sca/sp769/v1`): sp_id / sp_password are the deploying organisation's partner
    credentials, `user_id` the officer's CCCD, the credential is named by its certificate serial number."""

    def __init__(
        self,
        url: str,
        sp_id: str,
        sp_password: SecretStr,
        *,
        request_timeout_s: float = 30.0,
        poll_interval_s: float = 3.0,
    ) -> None:
        self.url, self.sp_id, self._sp_password = url.rstrip("/"), sp_id, sp_password
        self.request_timeout_s, self.poll_interval_s = request_timeout_s, poll_interval_s

    def _partner(self) -> dict[str, str]:
        return {"sp_id": self.sp_id, "sp_password": self._sp_password.get_secret_value()}

    def _call(self, path: str, body: dict[str, Any], stage: str) -> dict[str, Any]:
        answer = self._post(f"{self.url}{SMARTCA_PREFIX}/{path}", self._partner() | body, stage)
        if not isinstance(answer, dict):
            raise RemoteSigningFailed(f"SmartCA answered {stage} without an object")
        code = answer.get("status_code")
        if code is not None and _int(code) not in _SMARTCA_OK:
            raise RemoteSigningFailed(f"SmartCA {stage} status_code {code}")
        return answer

    def find_credential(self, credential_id: str, user_id: str) -> Credential:
        if not user_id:
            raise RemoteSigningNotConfigured("SmartCA needs the officer's user id (CCCD)")
        answer = self._call(
            "credentials/get_certificate",
            {"user_id": user_id, "serial_number": credential_id, "transaction_id": str(uuid.uuid4())},
            "credentials/get_certificate",
        )
        data = answer.get("data")
        listed = data.get("user_certificates") if isinstance(data, dict) else None
        for item in listed if isinstance(listed, list) else []:
            if not isinstance(item, dict) or not item.get("cert_data"):
                continue
            serial = str(item.get("serial_number") or "")
            if credential_id and credential_id.lower() not in {serial.lower(), str(item.get("cert_id") or "").lower()}:
                continue
            return _credential(serial, _b64(item["cert_data"], "cert_data"), ())
        raise RemoteSigningNotConfigured(f"SmartCA lists no certificate {credential_id!r} for this user")

    def submit(self, credential: Credential, user_id: str, hashes: Sequence[bytes], names: Sequence[str]) -> str:
        answer = self._call(
            "signatures/sign",
            {
                "user_id": user_id,
                "transaction_id": str(uuid.uuid4()),
                "transaction_desc": f"Ký số {len(hashes)} tài liệu",
                "serial_number": credential.credential_id,
                "sign_files": [
                    {"file_type": "pdf", "data_to_be_signed": h.hex(), "doc_id": name, "sign_type": "hash"}
                    for h, name in zip(hashes, names, strict=True)
                ],
                "time_stamp": dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S"),
            },
            "signatures/sign",
        )
        ref = _field(answer, "transaction_id")
        if not ref:
            raise RemoteSigningFailed("SmartCA answered signatures/sign without a transaction_id")
        return str(ref)

    def status(self, credential: Credential, user_id: str, ref: str) -> Poll:
        answer = self._call(f"signatures/sign/{ref}/status", {}, "signatures/sign/status")
        message = str(answer.get("message") or "").upper()
        if message in _SMARTCA_ENDS:
            raise _SMARTCA_ENDS[message](f"SmartCA transaction ended: {message}")
        if message != "SUCCESS":
            return Poll()  # waiting (the reference lists no waiting message: anything not final is one)
        data = answer.get("data")
        values = data.get("signatures") if isinstance(data, dict) else None
        if not isinstance(values, list):
            raise RemoteSigningFailed("SmartCA answered SUCCESS without data.signatures")
        return Poll(tuple(_b64(v.get("signature_value") if isinstance(v, dict) else None, "signature_value")
                          for v in values))  # fmt: skip


# --- Viettel MySign ---------------------------------------------------------------------------------------
MYSIGN_PREFIX = "/vtss/service"
_MYSIGN_WAITING = {4000, 6000}
_MYSIGN_ENDS: dict[int, type[SignError]] = {
    4001: RemoteSigningTimeout,
    4002: RemoteSigningRejected,
    4004: RemoteSigningFailed,
    4005: RemoteSigningQuota,
    13004: RemoteCertificateRefused,
}


class MySignClient(_Service):
    """Viettel MySign (`/vtss/service`): a bearer token per officer from `ras/v1/login` (client_id,
    client_secret, profile_id, user_id), kept in memory for this client's life only."""

    def __init__(
        self,
        url: str,
        client_id: str,
        client_secret: SecretStr,
        profile_id: str,
        *,
        request_timeout_s: float = 30.0,
        poll_interval_s: float = 2.0,
    ) -> None:
        self.url, self.client_id, self._client_secret, self.profile_id = (
            url.rstrip("/"),
            client_id,
            client_secret,
            profile_id,
        )
        self.request_timeout_s, self.poll_interval_s = request_timeout_s, poll_interval_s
        self._tokens: dict[str, str] = {}

    def _token(self, user_id: str) -> str:
        if user_id not in self._tokens:
            answer = self._post(
                f"{self.url}{MYSIGN_PREFIX}/ras/v1/login",
                {
                    "client_id": self.client_id,
                    "client_secret": self._client_secret.get_secret_value(),
                    "profile_id": self.profile_id,
                    "user_id": user_id,
                },
                "ras/v1/login",
            )
            token = _field(answer, "access_token")
            if not token:
                raise RemoteSigningFailed("MySign login answered without an access_token")
            self._tokens[user_id] = str(token)
        return self._tokens[user_id]

    def _call(self, path: str, body: dict[str, Any], user_id: str) -> Any:
        headers = {"Authorization": f"Bearer {self._token(user_id)}"}
        return self._post(f"{self.url}{MYSIGN_PREFIX}/{path}", body, path, headers)

    def find_credential(self, credential_id: str, user_id: str) -> Credential:
        if not user_id:
            raise RemoteSigningNotConfigured("MySign needs the officer's user id (CMT_/MST_...)")
        answer = self._call("certificates/info", {}, user_id)
        listed = answer if isinstance(answer, list) else []
        for item in listed:
            if not isinstance(item, dict):
                continue
            if credential_id and str(item.get("credential_id") or "") != credential_id:
                continue
            cert = item.get("cert")
            certs = cert.get("certificates") if isinstance(cert, dict) else None
            if not isinstance(certs, list) or not certs:
                continue
            ders = [_b64(c, "cert.certificates") for c in certs]
            return _credential(
                str(item.get("credential_id") or ""),
                ders[0],
                ders[1:],
                _int(item.get("scal") or 1),
                _int(item.get("multisign") or 1),
            )
        raise RemoteSigningNotConfigured(f"MySign lists no credential {credential_id!r} for this user")

    def submit(self, credential: Credential, user_id: str, hashes: Sequence[bytes], names: Sequence[str]) -> str:
        answer = self._call(
            "signHash",
            {
                "credentialID": credential.credential_id,
                "numSignatures": len(hashes),
                "documents": [
                    {"document_id": name, "document_name": base64.b64encode(f"{name}.pdf".encode()).decode()}
                    for name in names
                ],
                "hash": [base64.b64encode(h).decode() for h in hashes],
                "hashAlgo": SHA256_OID,
                "signAlgo": RSA_OID,
                "async": 1,  # answer at once with a transactionId, then poll
            },
            user_id,
        )
        ref = _field(answer, "transactionId")
        if not ref:
            raise RemoteSigningFailed("MySign answered signHash without a transactionId")
        return str(ref)

    def status(self, credential: Credential, user_id: str, ref: str) -> Poll:
        answer = self._call("requests/status", {"transactionId": ref}, user_id)
        code = _int(_field(answer, "status"))
        if code in _MYSIGN_WAITING:
            return Poll()
        if code in _MYSIGN_ENDS:
            raise _MYSIGN_ENDS[code](f"MySign transaction ended with status {code}")
        if code != 1:
            raise RemoteSigningFailed(f"MySign answered an unknown status {code}")
        values = _field(answer, "signatures")
        if not isinstance(values, list):
            raise RemoteSigningFailed("MySign answered status 1 without signatures")
        return Poll(tuple(_b64(v, "signatures[]") for v in values))


def _field(answer: Any, name: str) -> Any:
    """A field at the top of an answer or else under its `data` object (the reference does not say which
    for these fields, so both are read)."""
    if not isinstance(answer, dict):
        return None
    if name in answer:
        return answer[name]
    data = answer.get("data")
    return data.get(name) if isinstance(data, dict) else None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1
