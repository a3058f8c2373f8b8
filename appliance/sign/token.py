"""Token values and the pure rules about them: PIN flags, certificate usability, choosing a certificate.

No PKCS#11 here: `appliance.sign.pkcs11` reads the token and hands these functions plain values,
so the lockout rules are testable with any flag value (SoftHSM never sets FINAL_TRY or LOCKED).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from appliance.errors import (
    CertificateExpired,
    CertificateNoNonRepudiation,
    CertificateNotFound,
    CertificateNotYetValid,
    PinFinalTry,
    PinLocked,
)

# CK_TOKEN_INFO flags (PKCS#11 v2.40 §3.2), as plain numbers.
CKF_LOGIN_REQUIRED = 0x00000004
CKF_USER_PIN_INITIALIZED = 0x00000008
CKF_PROTECTED_AUTHENTICATION_PATH = 0x00000100
CKF_TOKEN_INITIALIZED = 0x00000400
CKF_USER_PIN_COUNT_LOW = 0x00010000
CKF_USER_PIN_FINAL_TRY = 0x00020000
CKF_USER_PIN_LOCKED = 0x00040000
CKF_USER_PIN_TO_BE_CHANGED = 0x00080000

ROLES = ("officer", "organisation")


class PinState(enum.StrEnum):
    OK = "ok"
    COUNT_LOW = "count_low"  # a wrong PIN was entered since the last good login
    FINAL_TRY = "final_try"  # the next wrong PIN locks the token
    LOCKED = "locked"
    TO_BE_CHANGED = "to_be_changed"
    NOT_INITIALISED = "not_initialised"


def pin_state(flags: int) -> PinState:
    """The most serious PIN state the token flags show."""
    if flags & CKF_USER_PIN_LOCKED:
        return PinState.LOCKED
    if flags & CKF_USER_PIN_FINAL_TRY:
        return PinState.FINAL_TRY
    if not flags & CKF_USER_PIN_INITIALIZED:
        return PinState.NOT_INITIALISED
    if flags & CKF_USER_PIN_COUNT_LOW:
        return PinState.COUNT_LOW
    if flags & CKF_USER_PIN_TO_BE_CHANGED:
        return PinState.TO_BE_CHANGED
    return PinState.OK


def check_login_allowed(flags: int) -> PinState:
    """Refuse a login the token could punish: locked, or one wrong PIN away from locked.

    Returns the state (OK / COUNT_LOW / TO_BE_CHANGED) when a single attempt may go ahead.
    """
    state = pin_state(flags)
    if state is PinState.LOCKED:
        raise PinLocked("the token reports USER_PIN_LOCKED; no login attempted")
    if state is PinState.FINAL_TRY:
        raise PinFinalTry("the token reports USER_PIN_FINAL_TRY; no login attempted")
    if state is PinState.NOT_INITIALISED:
        raise PinLocked("the token's user PIN is not initialised; no login attempted")
    return state


@dataclass(frozen=True, slots=True)
class CertInfo:
    cka_id: str  # hex, pairs the certificate with its private key
    label: str
    subject: str
    common_name: str
    organisation: str
    issuer: str
    serial: str  # hex
    not_before: dt.datetime
    not_after: dt.datetime
    days_to_expiry: int
    key_usage: tuple[str, ...]
    non_repudiation: bool
    is_ca: bool
    sha256: str  # fingerprint of the DER
    role: str  # "officer" (personal) or "organisation" (guessed from the subject, see role_of)
    # Identity numbers Vietnamese CAs put in the subject, raw (e.g. "CCCD:001203004005", "CMND:...",
    # "MST:0101234567"); "" when absent. UID is 0.9.2342.19200300.100.1.1, serialNumber is 2.5.4.5.
    subject_uid: str = ""
    subject_serial_number: str = ""
    key_type: str = ""  # "rsa" | "ec" | another algorithm name
    key_bits: int = 0  # RSA modulus / EC curve size


@dataclass(frozen=True, slots=True)
class TokenInfo:
    serial: str
    label: str
    manufacturer: str
    model: str
    slot_id: int
    flags: int
    pin_state: PinState
    certificates: tuple[CertInfo, ...]


_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def role_of(cert: x509.Certificate) -> str:
    """Organisation certificates name the organisation as the subject (CN equals O, or a tax-code UID
    'MST:'); personal certificates name a person. Override with an explicit CKA_ID when unsure."""
    cn = _attr(cert.subject, NameOID.COMMON_NAME)
    org = _attr(cert.subject, NameOID.ORGANIZATION_NAME)
    uid = _attr(cert.subject, NameOID.USER_ID)
    if uid.upper().startswith("MST:") or (org and cn.casefold() == org.casefold()):
        return "organisation"
    return "officer"


def key_facts(cert: x509.Certificate) -> tuple[str, int]:
    """The public key's type ("rsa", "ec", or the class name otherwise) and size in bits."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec", key.curve.key_size
    return type(key).__name__.removesuffix("PublicKey").lower(), 0


def cert_info(der: bytes, cka_id: bytes, label: str, now: dt.datetime) -> CertInfo:
    cert = x509.load_der_x509_certificate(der)
    key_type, key_bits = key_facts(cert)
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        usages = tuple(u for u in _KEY_USAGES if getattr(ku, u))
    except x509.ExtensionNotFound:
        usages = ()
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    not_after = cert.not_valid_after_utc
    return CertInfo(
        cka_id=cka_id.hex(),
        label=label,
        subject=cert.subject.rfc4514_string(),
        common_name=_attr(cert.subject, NameOID.COMMON_NAME),
        organisation=_attr(cert.subject, NameOID.ORGANIZATION_NAME),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=not_after,
        days_to_expiry=(not_after - now).days,
        key_usage=usages,
        non_repudiation="content_commitment" in usages,
        is_ca=is_ca,
        sha256=cert.fingerprint(hashes.SHA256()).hex(),
        role=role_of(cert),
        subject_uid=_attr(cert.subject, NameOID.USER_ID),
        subject_serial_number=_attr(cert.subject, NameOID.SERIAL_NUMBER),
        key_type=key_type,
        key_bits=key_bits,
    )


def check_cert_usable(cert: CertInfo, now: dt.datetime) -> None:
    """A certificate signs documents only while valid and with the non-repudiation usage."""
    if now > cert.not_after:
        raise CertificateExpired(f"certificate {cert.subject} expired on {cert.not_after.isoformat()}")
    if now < cert.not_before:
        raise CertificateNotYetValid(f"certificate {cert.subject} is valid from {cert.not_before.isoformat()}")
    if not cert.non_repudiation:
        raise CertificateNoNonRepudiation(
            f"certificate {cert.subject} lacks the non-repudiation (content commitment) key usage"
        )


def choose_cert(certs: Sequence[CertInfo], role: str, cka_id: str | None = None) -> CertInfo:
    """The certificate to sign with: by CKA_ID when given, else the one end-entity certificate of the role.

    The choice is made before any usability check, so an expired or wrong-usage certificate is reported
    as such rather than silently skipped.
    """
    if cka_id is not None:
        wanted = cka_id.lower().removeprefix("0x")
        for cert in certs:
            if cert.cka_id == wanted:
                return cert
        raise CertificateNotFound(f"no certificate with CKA_ID {wanted} on the token")
    ours = [c for c in certs if not c.is_ca and c.role == role]
    if not ours:
        raise CertificateNotFound(f"no {role} certificate on the token")
    if len(ours) > 1:
        # Prefer the usable ones; among them the one valid longest.
        usable = [c for c in ours if c.non_repudiation]
        ours = sorted(usable or ours, key=lambda c: c.not_after, reverse=True)
    return ours[0]
