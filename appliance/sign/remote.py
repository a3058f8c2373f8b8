"""Remote signing services behind the token's seam: the same PAdES marks, packages and policy, but the key
lives in the provider's HSM and the officer approves on the phone.

CSC API v1 (Cloud Signature Consortium 1.0.4.0) through pyHanko's `CSCSigner`:
- `CscClient.credential(id)`: `credentials/info` (certificate, chain, key algorithms, SCAL, multisign);
- `CscClient.approve(credential, count)`: `credentials/authorize` -> SAD. This is the officer's approval:
  a provider that pushes a request to the phone answers only once the officer confirms (or rejects, or
  lets it expire). With SCAL 1 one SAD covers `count` signatures; SCAL 2 pins it to hashes, so each
  round is authorized with its own hashes;
- `CscClient.sign(...)`: one `signatures/signHash` with every hash of a round (`CSCSigner` in batch mode,
  `batch_size` = the round), returning one CMS per signed-attributes blob.

The SAD and the OAuth token are kept in memory only: never logged, never written. Library and HTTP errors
are mapped here to `RemoteSigningRejected`, `RemoteSigningExpired`, `RemoteSigningTimeout`,
`RemoteSigningUnavailable` or `RemoteSigningFailed`.

What every provider shares lives here too: `RemoteService` / `RemoteBatch` (the seam appliance.signing
drives: find the officer's credential, then sign a batch in rounds, the documents and then their
packages), `post_json` (one HTTP call, errors mapped in one place) and `cms_from_raw` (a raw signature
value from a provider that returns one, checked against the certificate and wrapped into the same CMS
pyHanko makes for the token). The VNPT SmartCA and Viettel MySign adapters are in appliance.sign.vendor.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from appliance.errors import (
    RemoteSigningExpired,
    RemoteSigningFailed,
    RemoteSigningNotConfigured,
    RemoteSigningRejected,
    RemoteSigningTimeout,
    RemoteSigningUnavailable,
    SignError,
)
from appliance.sign.token import CertInfo, cert_info

log = logging.getLogger(__name__)

# CSC key.algo values (asn1crypto names of the OIDs) -> the PKCS#11 mechanism names that
# appliance.sign.policy.choose_algorithm reads, so a credential and a token obey one rule.
_MECHANISMS = {
    "rsassa_pss": "SHA256_RSA_PKCS_PSS",
    "sha256_rsa": "SHA256_RSA_PKCS",
    "rsassa_pkcs1v15": "SHA256_RSA_PKCS",
    "sha256_ecdsa": "ECDSA_SHA256",
    "ecdsa": "ECDSA",
}
_REJECTED = {"access_denied", "user_rejected", "consent_rejected", "rejected", "cancelled"}
_EXPIRED = {"expired_token", "invalid_sad", "expired", "sad_expired"}


@dataclass(frozen=True, slots=True)
class CscService:
    url: str  # the part before /csc/v1/...
    token: str | None = None  # OAuth2 bearer token of the deploying organisation; never logged or stored
    client_data: str | None = None
    request_timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Credential:
    """What `credentials/info` says about one credential (public facts only: storable)."""

    credential_id: str
    cert_der: bytes
    chain_der: tuple[bytes, ...]
    algorithms: tuple[str, ...]  # asn1crypto names: rsassa_pss, sha256_rsa, sha256_ecdsa, ...
    scal: int = 1
    multisign: int = 1

    @property
    def mechanisms(self) -> frozenset[str]:
        return frozenset(_MECHANISMS[a] for a in self.algorithms if a in _MECHANISMS)

    @property
    def offers_pss(self) -> bool:
        return "rsassa_pss" in self.algorithms

    def info(self, now: dt.datetime) -> CertInfo:
        return cert_info(self.cert_der, b"", "remote", now)

    def to_json(self) -> dict[str, Any]:
        return {
            "credential_id": self.credential_id,
            "cert": base64.b64encode(self.cert_der).decode(),
            "chain": [base64.b64encode(c).decode() for c in self.chain_der],
            "algorithms": list(self.algorithms),
            "scal": self.scal,
            "multisign": self.multisign,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Credential:
        return cls(
            data["credential_id"],
            base64.b64decode(data["cert"]),
            tuple(base64.b64decode(c) for c in data.get("chain", [])),
            tuple(data.get("algorithms", [])),
            int(data.get("scal", 1)),
            int(data.get("multisign", 1)),
        )


def external_signer(
    credential: Credential, algorithm: str, extra_chain: Sequence[bytes] = (), signature_value: bytes | None = None
) -> Any:
    """pyHanko's ExternalSigner for the preparing half: the remote certificate and the mechanism that will
    sign (it is named inside the signed attributes, so both halves must agree). With `signature_value`
    (a provider's raw signature) it makes the finished CMS instead."""
    from asn1crypto import x509 as asn1_x509  # type: ignore[import-untyped]
    from pyhanko.sign.signers.pdf_cms import ExternalSigner
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    store = SimpleCertificateStore()  # type: ignore[no-untyped-call]
    store.register_multiple([asn1_x509.Certificate.load(c) for c in (*credential.chain_der, *extra_chain)])
    cert = asn1_x509.Certificate.load(credential.cert_der)
    key_bytes = (cert.public_key.bit_size + 7) // 8
    size = key_bytes if cert.public_key.algorithm == "rsa" else 2 * key_bytes + 9  # ECDSA: DER of (r, s)
    value = signature_value if signature_value is not None else size
    return ExternalSigner(cert, store, signature_value=value, signature_mechanism=mechanism(algorithm))


def check_raw(credential: Credential, algorithm: str, data: bytes, raw: bytes) -> None:
    """A provider's raw signature over `data` must verify with the credential's key under `algorithm`:
    anything else (a CMS blob, a signature over other bytes) is refused before it reaches a document."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    from appliance.sign.policy import ECDSA, PSS

    key = x509.load_der_x509_certificate(credential.cert_der).public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            pad: padding.AsymmetricPadding = (
                padding.PSS(padding.MGF1(hashes.SHA256()), 32) if algorithm == PSS else padding.PKCS1v15()
            )
            key.verify(raw, data, pad, hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm == ECDSA:
            key.verify(raw, data, ec.ECDSA(hashes.SHA256()))
        else:
            raise RemoteSigningFailed(f"no check for a {type(key).__name__} key under {algorithm}")
    except InvalidSignature as err:
        raise RemoteSigningFailed(
            "the provider's signature does not verify with the credential's certificate (not a raw signature?)"
        ) from err


def cms_from_raw(
    credential: Credential,
    algorithm: str,
    signed_attrs: bytes,
    raw: bytes,
    *,
    extra_chain: Sequence[bytes] = (),
    tsa_url: str | None = None,
) -> bytes:
    """The CMS (DER) around a provider's raw signature of `signed_attrs`, checked first, with a signature
    timestamp when `tsa_url` is given: the same structure CSCSigner and the token path produce."""
    from asn1crypto import cms
    from pyhanko.sign.timestamps import HTTPTimeStamper

    check_raw(credential, algorithm, signed_attrs, raw)
    signer = external_signer(credential, algorithm, extra_chain, signature_value=raw)
    timestamper = HTTPTimeStamper(tsa_url, timeout=10) if tsa_url else None
    try:
        result = asyncio.run(
            signer.async_sign_prescribed_attributes(
                "sha256", cms.CMSAttributes.load(signed_attrs), timestamper=timestamper
            )
        )
    except Exception as err:  # noqa: BLE001 - mapped in one place
        raise _translate(err, "timestamp") from err
    der: bytes = result.dump()
    return der


class RemoteBatch(Protocol):
    """One batch's requests to a provider. `sign` is called once per round ("documents", then "packages")
    and returns one CMS (DER) per signed-attributes blob. `ref` is the provider's transaction of this round
    when an earlier run already sent it (a restart), and `submitted(ref)` is called, before waiting, with
    the reference of a request just sent, so the caller stores it."""

    def sign(
        self,
        stage: str,
        signed_attrs: Sequence[bytes],
        *,
        ref: str | None,
        submitted: Callable[[str], None],
        tsa_url: str | None,
    ) -> list[bytes]: ...


class RemoteService(Protocol):
    """A configured provider: finds the officer's credential and opens a batch on it."""

    def find_credential(self, credential_id: str, user_id: str) -> Credential: ...

    def batch(
        self,
        credential: Credential,
        algorithm: str,
        *,
        user_id: str,
        extra_chain: Sequence[bytes],
        total: int,
        deadline: dt.datetime,
    ) -> RemoteBatch: ...


def mechanism(algorithm: str) -> Any:
    """The CMS signature algorithm for one of appliance.sign.policy's names (PSS: SHA-256, MGF1-SHA-256,
    salt 32, as the token path signs)."""
    from asn1crypto import algos

    from appliance.sign.policy import ECDSA, PKCS1, PSS

    if algorithm == PSS:
        params = algos.RSASSAPSSParams(
            {
                "hash_algorithm": {"algorithm": "sha256"},
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
                "salt_length": 32,
                "trailer_field": "trailer_field_bc",
            }
        )
        return algos.SignedDigestAlgorithm({"algorithm": "rsassa_pss", "parameters": params})
    if algorithm == PKCS1:
        return algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa"})
    if algorithm == ECDSA:
        return algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"})
    raise SignError(f"unknown signature algorithm {algorithm!r}")


def cades_signed_attrs(credential: Credential, algorithm: str, data: bytes, when: dt.datetime) -> bytes:
    """The signed attributes of a CAdES detached signature over `data` (an ASiC manifest), as the token path
    makes them (appliance.sign.worker._cms), DER."""
    from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes

    signer = external_signer(credential, algorithm)
    attrs = asyncio.run(
        signer.signed_attrs(
            hashlib.sha256(data).digest(),
            "sha256",
            attr_settings=PdfCMSSignedAttributes(signing_time=when),
            use_pades=False,
            is_pdf_sig=False,
        )
    )
    der: bytes = attrs.dump()
    return der


def _body(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _translate(err: BaseException, stage: str) -> SignError:
    """One place where library and HTTP errors become the box's errors (the SAD never appears in them)."""
    import aiohttp

    if isinstance(err, SignError):
        return err
    if isinstance(err, asyncio.TimeoutError | TimeoutError):
        return RemoteSigningTimeout(f"the signing service did not answer in time ({stage})")
    if isinstance(err, aiohttp.ClientResponseError):
        return RemoteSigningFailed(f"the signing service answered HTTP {err.status} ({stage})")
    if isinstance(err, aiohttp.ClientConnectionError | OSError):
        return RemoteSigningUnavailable(f"cannot reach the signing service ({stage}): {type(err).__name__}")
    cause = err.__cause__
    if cause is not None and cause is not err:
        return _translate(cause, stage)
    return RemoteSigningFailed(f"remote signing failed ({stage}): {type(err).__name__}")


def _error_for(status: int, body: dict[str, Any], stage: str) -> SignError:
    code = str(body.get("error") or "").lower()
    detail = f"HTTP {status} {code or ''} ({stage})".strip()
    if code in _REJECTED:
        return RemoteSigningRejected(f"the officer rejected the request: {detail}")
    if code in _EXPIRED or "expired" in str(body.get("error_description") or "").lower():
        return RemoteSigningExpired(f"the approval expired: {detail}")
    if status in (401, 403):
        return RemoteSigningRejected(f"the signing service refused the request: {detail}")
    return RemoteSigningFailed(f"the signing service refused the request: {detail}")


def post_json(
    url: str,
    body: dict[str, Any],
    *,
    stage: str,
    timeout_s: float,
    headers: dict[str, str] | None = None,
    refused: Callable[[int, dict[str, Any], str], SignError] = _error_for,
) -> Any:
    """One JSON POST to a provider; its answer parsed (an object, a list, or {} when not JSON). An HTTP
    error becomes `refused(status, body, stage)`, a library error goes through `_translate`. Neither the
    request body nor the headers (partner secrets, tokens) ever reach an error or a log line."""
    import aiohttp

    async def go() -> Any:
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, json=body, headers=headers or {}, timeout=aiohttp.ClientTimeout(total=timeout_s)) as answer,
        ):
            text = await answer.text()
            if answer.status >= 400:
                raise refused(answer.status, _body(text), stage)
            try:
                return json.loads(text)
            except ValueError:
                return {}

    try:
        return asyncio.run(go())
    except Exception as err:  # noqa: BLE001 - mapped in one place
        raise _translate(err, stage) from err


class CscClient:
    """A CSC API v1 service (one deploying organisation's endpoint and token)."""

    def __init__(self, service: CscService) -> None:
        self.service = service

    def _url(self, endpoint: str) -> str:
        return f"{self.service.url.rstrip('/')}/csc/v1/{endpoint}"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.service.token}"} if self.service.token else {}

    def _run(self, endpoint: str, body: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        answer = post_json(
            self._url(endpoint),
            body,
            stage=endpoint,
            timeout_s=timeout_s or self.service.request_timeout_s,
            headers=self._headers(),
        )
        return answer if isinstance(answer, dict) else {}

    def find_credential(self, credential_id: str, user_id: str) -> Credential:
        """The officer's credential: the one named, else the first `credentials/list` gives for the user."""
        if not credential_id:
            listed = self.list_credentials(user_id)
            if not listed:
                raise RemoteSigningNotConfigured(f"the provider lists no credential for user {user_id!r}")
            credential_id = listed[0]
        return self.credential(credential_id)

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
        return CscBatch(self, credential, algorithm, extra_chain=extra_chain, total=total, deadline=deadline)

    def list_credentials(self, user_id: str | None = None) -> list[str]:
        body: dict[str, Any] = {"maxResults": 50}
        if user_id:
            body["userID"] = user_id
        if self.service.client_data:
            body["clientData"] = self.service.client_data
        return [str(c) for c in self._run("credentials/list", body).get("credentialIDs", [])]

    def credential(self, credential_id: str) -> Credential:
        """`credentials/info` with the certificate chain."""
        from asn1crypto import algos

        data = self._run("credentials/info", {"credentialID": credential_id, "certificates": "chain"})
        try:
            certs = [base64.b64decode(c) for c in data["cert"]["certificates"]]
            names = []
            for oid in data.get("key", {}).get("algo", []):
                try:
                    names.append(str(algos.SignedDigestAlgorithmId(oid).native))
                except ValueError:
                    continue
            return Credential(
                credential_id,
                certs[0],
                tuple(certs[1:]),
                tuple(names),
                int(data.get("SCAL", 1)),
                int(data.get("multisign", 1)),
            )
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise RemoteSigningFailed(f"credentials/info answered without a certificate: {type(err).__name__}") from err

    def approve(
        self, credential: Credential, count: int, *, hashes: Sequence[bytes] = (), timeout_s: float = 300.0
    ) -> str:
        """`credentials/authorize`: waits for the officer's approval (at most `timeout_s`); returns the SAD,
        which the caller keeps in memory only."""
        body: dict[str, Any] = {"credentialID": credential.credential_id, "numSignatures": count}
        if hashes:
            body["hash"] = [base64.b64encode(h).decode() for h in hashes]
        if self.service.client_data:
            body["clientData"] = self.service.client_data
        answer = self._run("credentials/authorize", body, timeout_s=max(1.0, timeout_s))
        sad = answer.get("SAD")
        if not isinstance(sad, str) or not sad:
            raise RemoteSigningFailed("credentials/authorize answered without a SAD")
        return sad

    def sign(
        self,
        credential: Credential,
        algorithm: str,
        signed_attrs: Sequence[bytes],
        sad: str,
        *,
        extra_chain: Sequence[bytes] = (),
        tsa_url: str | None = None,
        timeout_s: float = 120.0,
    ) -> list[bytes]:
        """One `signatures/signHash` for every blob (pyHanko's CSCSigner, batch of len(signed_attrs)); the
        CMS (DER) of each, timestamped when `tsa_url` is given and answers."""
        if not signed_attrs:
            return []
        try:
            return asyncio.run(self._sign(credential, algorithm, signed_attrs, sad, extra_chain, tsa_url, timeout_s))
        except Exception as err:  # noqa: BLE001 - mapped in one place
            raise _translate(err, "signatures/signHash") from err

    async def _sign(
        self,
        credential: Credential,
        algorithm: str,
        signed_attrs: Sequence[bytes],
        sad: str,
        extra_chain: Sequence[bytes],
        tsa_url: str | None,
        timeout_s: float,
    ) -> list[bytes]:
        import aiohttp
        from asn1crypto import cms
        from asn1crypto import x509 as asn1_x509
        from pyhanko.sign.signers.csc_signer import (
            CSCAuthorizationInfo,
            CSCCredentialInfo,
            CSCServiceSessionInfo,
            CSCSigner,
            PrefetchedSADAuthorizationManager,
        )
        from pyhanko.sign.timestamps import HTTPTimeStamper

        chain = [asn1_x509.Certificate.load(c) for c in dict.fromkeys((*credential.chain_der, *extra_chain))]
        info = CSCCredentialInfo(
            signing_cert=asn1_x509.Certificate.load(credential.cert_der),
            chain=chain,
            supported_mechanisms=frozenset(credential.algorithms),
            max_batch_size=max(credential.multisign, len(signed_attrs)),
            hash_pinning_required=credential.scal >= 2,
            response_data={},
        )
        session_info = CSCServiceSessionInfo(self.service.url.rstrip("/"), credential.credential_id)
        session_info = _with_token(session_info, self.service.token)
        auth = PrefetchedSADAuthorizationManager(session_info, info, CSCAuthorizationInfo(sad=sad))
        timestamper = HTTPTimeStamper(tsa_url, timeout=10) if tsa_url else None
        async with aiohttp.ClientSession() as http:
            signer = CSCSigner(
                http,
                auth,
                sign_timeout=int(timeout_s),
                client_data=self.service.client_data,
                batch_size=len(signed_attrs),
                batch_autocommit=True,
            )
            signer._signature_mechanism = mechanism(algorithm)  # the policy's choice, as in the first half
            results = await asyncio.gather(
                *(
                    signer.async_sign_prescribed_attributes(
                        "sha256", cms.CMSAttributes.load(attrs), timestamper=timestamper
                    )
                    for attrs in signed_attrs
                )
            )
        return [r.dump() for r in results]


class CscBatch:
    """A batch on a CSC credential: the approval (`credentials/authorize`, the SAD) is asked once and kept
    in memory for every round under SCAL 1 (`numSignatures` = the whole batch); a SCAL 2 credential pins
    the SAD to hashes, so each round is approved with its own. CSC has no transaction to resume: `ref` is
    not used (a restart asks for the approval again)."""

    def __init__(
        self,
        client: CscClient,
        credential: Credential,
        algorithm: str,
        *,
        extra_chain: Sequence[bytes],
        total: int,
        deadline: dt.datetime,
    ) -> None:
        self.client, self.credential, self.algorithm = client, credential, algorithm
        self.extra_chain, self.total, self.deadline = tuple(extra_chain), total, deadline
        self._sad: str | None = None

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
        pinned = self.credential.scal >= 2
        if self._sad is None or pinned:
            left = (self.deadline - dt.datetime.now(dt.UTC)).total_seconds()
            if left <= 0:
                raise RemoteSigningExpired(f"the batch was not approved in time ({stage})")
            self._sad = self.client.approve(
                self.credential,
                len(signed_attrs) if pinned else max(self.total, len(signed_attrs)),
                hashes=[hashlib.sha256(a).digest() for a in signed_attrs] if pinned else (),
                timeout_s=left,
            )
        return self.client.sign(
            self.credential, self.algorithm, signed_attrs, self._sad, extra_chain=self.extra_chain, tsa_url=tsa_url
        )


def _with_token(info: Any, token: str | None) -> Any:
    import dataclasses

    return dataclasses.replace(info, oauth_token=token) if token else info
