"""Circular 15/2025/TT-BKHCN before signing: the algorithm, the key size, the trust path and revocation.

Pure rules plus the one check that goes to the network (revocation); no PKCS#11 here. The signing worker
calls them for every certificate it is about to use, before the PIN is used (appliance.sign.worker):
1. `check_key`: RSA keys under 2048 bits and EC keys under 256 bits are refused;
2. `choose_algorithm`: RSASSA-PSS (SHA-256, MGF1-SHA-256, salt 32) whenever the token offers
   CKM_SHA256_RSA_PKCS_PSS; otherwise PKCS#1 v1.5 only under policy "prefer" (note "token_without_pss")
   or "legacy" (note "legacy_policy"), refused under "require". EC keys sign ECDSA-SHA256 (CKM_ECDSA_SHA256,
   or CKM_ECDSA over a digest made here, as SoftHSM2 offers only that);
3. `check_certificate`: the trust path to a pinned root (appliance.sign.trust) at this moment, then the
   revocation of every certificate on it but the root (appliance.sign.revocation); revoked always refuses,
   unknown refuses only under `revocation_unknown = "block"`, else it is logged and recorded.

`SignPolicy` travels to the worker as JSON; `sign_policy(settings)` builds it from the box's settings.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from appliance.errors import (
    CertificateKeyTooSmall,
    CertificateRevoked,
    CertificateUntrusted,
    RevocationUnknown,
    SignatureAlgorithmUnavailable,
)
from appliance.sign import revocation
from appliance.sign.token import CertInfo
from appliance.sign.trust import PathProblem, TrustStore, configured_store, sha256, trust_path

if TYPE_CHECKING:
    from appliance.settings import Settings

log = logging.getLogger(__name__)

MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
PSS = "rsassa-pss-sha256"
PKCS1 = "rsa-pkcs1v15-sha256"
ECDSA = "ecdsa-sha256"
ALGORITHM_LABELS = {
    PSS: "RSASSA-PSS (SHA-256)",
    PKCS1: "RSA PKCS#1 v1.5 (SHA-256)",
    ECDSA: "ECDSA (SHA-256)",
}


@dataclass(frozen=True, slots=True)
class SignPolicy:
    signature_policy: str = "prefer"  # prefer | require | legacy
    check_trust: bool = True  # False only for callers that pass no policy (recorded as "not_checked")
    trust_roots: tuple[str, ...] = ()  # PEM/DER files: roots (pinned) and intermediates
    trusted_root_sha256: tuple[str, ...] = ()
    revocation_unknown: str = "warn"  # block | warn
    revocation_fetch: bool = True
    revocation_timeout_s: float = 5.0
    cache_dir: str | None = None  # cached CRL/OCSP answers

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> SignPolicy:
        if data is None:
            return UNCHECKED
        values = {**data}
        values["trust_roots"] = tuple(values.get("trust_roots") or ())
        values["trusted_root_sha256"] = tuple(values.get("trusted_root_sha256") or ())
        return cls(**values)

    def store(self, now: dt.datetime) -> TrustStore:
        return configured_store([Path(p) for p in self.trust_roots], self.trusted_root_sha256, now)

    def revocation_options(self) -> revocation.RevocationOptions:
        return revocation.RevocationOptions(
            Path(self.cache_dir) if self.cache_dir else None, self.revocation_fetch, self.revocation_timeout_s
        )


# What `sign_and_package` does when its caller passes no policy: algorithm and key rules only; the trust
# path and revocation are not checked, and every result says so ("not_checked").
UNCHECKED = SignPolicy(check_trust=False)


def sign_policy(settings: Settings) -> SignPolicy:
    """The policy the box's settings ask for (`[sign]`), revocation answers cached under data_dir."""
    sign = settings.sign
    return SignPolicy(
        signature_policy=sign.signature_policy,
        check_trust=True,
        trust_roots=tuple(str(p) for p in sign.trust_roots),
        trusted_root_sha256=tuple(sign.trusted_root_sha256),
        revocation_unknown=sign.revocation_unknown,
        revocation_fetch=sign.revocation_fetch,
        revocation_timeout_s=sign.revocation_timeout_s,
        cache_dir=str(settings.data_dir / "revocation"),
    )


# --- algorithm and key --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Algorithm:
    name: str  # PSS | PKCS1 | ECDSA
    note: str = ""  # "" | "token_without_pss" | "legacy_policy": a PKCS#1 v1.5 fallback, recorded
    raw: bool = False  # the token signs a digest made here (pyHanko's use_raw_mechanism)

    @property
    def fallback(self) -> bool:
        return bool(self.note)


def check_key(cert: CertInfo) -> None:
    """RSA >= 2048 bits, ECDSA >= 256 bits (Circular 15/2025 Appendix I); refused otherwise."""
    if cert.key_type == "rsa" and cert.key_bits < MIN_RSA_BITS:
        raise CertificateKeyTooSmall(
            f"certificate {cert.subject} has a {cert.key_bits}-bit RSA key; at least {MIN_RSA_BITS} are required"
        )
    if cert.key_type == "ec" and cert.key_bits < MIN_EC_BITS:
        raise CertificateKeyTooSmall(
            f"certificate {cert.subject} has a {cert.key_bits}-bit EC key; at least {MIN_EC_BITS} are required"
        )
    if cert.key_type not in {"rsa", "ec"}:
        raise SignatureAlgorithmUnavailable(f"certificate {cert.subject} has a {cert.key_type or 'unknown'} key")


def choose_algorithm(cert: CertInfo, mechanisms: frozenset[str], policy: str) -> Algorithm:
    """The signature the token makes for this certificate under the policy; `mechanisms` are PKCS#11
    mechanism names without the CKM_ prefix (python-pkcs11's `Mechanism` names)."""
    check_key(cert)
    if cert.key_type == "ec":
        if "ECDSA_SHA256" in mechanisms:
            return Algorithm(ECDSA)
        if "ECDSA" in mechanisms:
            return Algorithm(ECDSA, raw=True)
        raise SignatureAlgorithmUnavailable("the token offers neither CKM_ECDSA_SHA256 nor CKM_ECDSA")
    pkcs1 = (
        Algorithm(PKCS1)
        if "SHA256_RSA_PKCS" in mechanisms
        else Algorithm(PKCS1, raw=True)
        if "RSA_PKCS" in mechanisms
        else None
    )
    if policy == "legacy":
        if pkcs1 is None:
            raise SignatureAlgorithmUnavailable("the token offers no RSA PKCS#1 v1.5 signature")
        return Algorithm(PKCS1, note="legacy_policy", raw=pkcs1.raw)
    if "SHA256_RSA_PKCS_PSS" in mechanisms:
        return Algorithm(PSS)
    if policy == "require":
        raise SignatureAlgorithmUnavailable(
            "the token does not offer CKM_SHA256_RSA_PKCS_PSS and sign.signature_policy is 'require'"
        )
    if pkcs1 is None:
        raise SignatureAlgorithmUnavailable("the token offers neither RSASSA-PSS nor RSA PKCS#1 v1.5")
    log.warning("the token offers no RSASSA-PSS: signing with RSA PKCS#1 v1.5 (policy 'prefer'), recorded")
    return Algorithm(PKCS1, note="token_without_pss", raw=pkcs1.raw)


# --- trust and revocation -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CertStatus:
    """What was checked about one certificate before signing (recorded with every signature)."""

    cert_sha256: str
    trust_path: tuple[str, ...] = ()  # common names, signer first, root last; () = not checked
    anchor_sha256: str = ""
    revocation: str = revocation.NOT_CHECKED  # good | unknown | not_checked (revoked never signs)
    revocation_source: str = ""  # ocsp | crl | ocsp-cache | crl-cache | ""
    revocation_detail: str = ""
    chain_pem: tuple[str, ...] = ()  # the path's CA certificates (PEM), embedded in the signatures


def check_certificate(
    der: bytes, token_ders: list[bytes], policy: SignPolicy, store: TrustStore, now: dt.datetime
) -> CertStatus:
    """Trust path and revocation of the certificate `der`; raises the refusal, else what was found."""
    cert = x509.load_der_x509_certificate(der)
    fp = sha256(cert)
    if not policy.check_trust:
        log.warning("no signing policy given: trust path and revocation of %s are not checked", fp[:16])
        return CertStatus(fp, revocation_detail="no signing policy was given")
    full = store.with_candidates((x509.load_der_x509_certificate(d) for d in token_ders), now)
    try:
        path = trust_path(cert, full, now)
    except PathProblem as err:
        raise CertificateUntrusted(f"{cert.subject.rfc4514_string()}: {err.detail}") from err
    options = policy.revocation_options()
    answers = [
        revocation.check(subject, issuer, options, now)
        for subject, issuer in zip(path.certificates[:-1], path.certificates[1:], strict=True)
    ]
    revoked = [a for a in answers if a.status == revocation.REVOKED]
    if revoked:
        raise CertificateRevoked(revoked[0].detail)
    unknown = [a for a in answers if a.status != revocation.GOOD]
    detail = "; ".join(a.detail for a in answers)
    if unknown:
        if policy.revocation_unknown == "block":
            raise RevocationUnknown(detail)
        log.warning("revocation of %s unknown, signing anyway (sign.revocation_unknown = warn): %s", fp[:16], detail)
    sources = sorted({a.source for a in answers if a.source})
    return CertStatus(
        fp,
        path.names,
        sha256(path.anchor),
        revocation.UNKNOWN if unknown else revocation.GOOD,
        ",".join(sources),
        detail,
        tuple(c.public_bytes(serialization.Encoding.PEM).decode() for c in path.certificates[1:]),
    )
