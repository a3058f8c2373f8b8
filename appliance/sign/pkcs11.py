"""The PKCS#11 adapter: the only module that imports `pkcs11` (python-pkcs11) or pyHanko's PKCS#11 signer.

It runs inside the signing worker process (appliance.sign.worker), never in the web UI or outbox
process: a vendor module that crashes, or python-pkcs11 0.9.5 leaking a session after a wrong PIN,
only takes the short-lived worker down. Library errors become appliance errors here.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pkcs11
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as pkx

from appliance.errors import (
    ApplianceError,
    PinIncorrect,
    PinLocked,
    PinRequired,
    PrivateKeyNotFound,
    SignError,
    TokenAmbiguous,
    TokenModuleError,
    TokenNotFound,
    TokenRemoved,
)
from appliance.sign.token import CertInfo, TokenInfo, cert_info, check_login_allowed, pin_state

log = logging.getLogger(__name__)

# Errors meaning the device or its session went away: tear everything down, documents stay unsigned.
_GONE = (
    pkx.DeviceRemoved,
    pkx.TokenNotPresent,
    pkx.TokenNotRecognised,
    pkx.SessionHandleInvalid,
    pkx.SessionClosed,
    pkx.ObjectHandleInvalid,
    pkx.DeviceError,
    pkx.SlotIDInvalid,
)


def translate(err: BaseException) -> ApplianceError:
    """The appliance error for a PKCS#11 (or vendor-module) failure."""
    if isinstance(err, ApplianceError):
        return err
    name = type(err).__name__
    if isinstance(err, pkx.PinIncorrect | pkx.PinLenRange | pkx.PinInvalid):
        return PinIncorrect(f"the token rejected the PIN ({name})")
    if isinstance(err, pkx.PinLocked | pkx.PinExpired):
        return PinLocked(f"the token refused the login ({name})")
    if isinstance(err, _GONE):
        return TokenRemoved(f"the token or its session went away ({name})")
    if isinstance(err, MemoryError):
        return TokenModuleError("the PKCS#11 module returned unusable data (MemoryError)")
    if isinstance(err, pkx.PKCS11Error):
        return SignError(f"PKCS#11 error {name}")
    return SignError(f"{name}: {err}")


def load(module: Path) -> Any:
    """Load the vendor's PKCS#11 module (`pkcs11.lib`)."""
    if not module.is_file():
        raise TokenModuleError(f"PKCS#11 module {module} does not exist")
    try:
        return pkcs11.lib(str(module))
    except (pkx.PKCS11Error, OSError, RuntimeError) as err:
        raise TokenModuleError(f"cannot load PKCS#11 module {module}: {type(err).__name__}") from err


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).strip().rstrip("\x00").strip()


def _present(lib: Any) -> list[tuple[Any, Any]]:
    """(slot, token) for every slot with an initialised token; fresh objects, so flags are current."""
    try:
        slots = lib.get_slots(token_present=True)
        found = []
        for slot in slots:
            token = slot.get_token()
            if int(token.flags) & 0x400 and _text(token.serial):  # CKF_TOKEN_INITIALIZED, skip empty slots
                found.append((slot, token))
        return found
    except (pkx.PKCS11Error, MemoryError) as err:
        raise translate(err) from err


def find_token(lib: Any, serial: str | None) -> Any:
    """The token with this serial (never chosen by label); without a serial, the only token present."""
    present = _present(lib)
    if serial is not None:
        for _slot, token in present:
            if _text(token.serial) == serial.strip():
                return token
        raise TokenNotFound(f"no token with serial {serial} (present: {[_text(t.serial) for _s, t in present]})")
    if not present:
        raise TokenNotFound("no token present")
    if len(present) > 1:
        raise TokenAmbiguous(f"{len(present)} tokens present; choose one by serial")
    return present[0][1]


def _read_certs(session: Any, now: dt.datetime) -> list[tuple[CertInfo, bytes]]:
    out: list[tuple[CertInfo, bytes]] = []
    for obj in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE}):
        der = bytes(obj[Attribute.VALUE])
        cka_id = bytes(obj[Attribute.ID])
        try:
            label = _text(obj[Attribute.LABEL])
        except pkx.PKCS11Error:
            label = ""
        try:
            out.append((cert_info(der, cka_id, label, now), der))
        except ValueError:
            log.warning("skipping a certificate object that does not parse (CKA_ID %s)", cka_id.hex())
    return out


def describe_token(token: Any, slot_id: int, now: dt.datetime) -> TokenInfo:
    """Token facts and its public certificates (read without logging in)."""
    flags = int(token.flags)
    try:
        with token.open() as session:
            certs = tuple(c for c, _der in _read_certs(session, now))
    except (pkx.PKCS11Error, MemoryError) as err:
        raise translate(err) from err
    return TokenInfo(
        serial=_text(token.serial),
        label=_text(token.label),
        manufacturer=_text(token.manufacturer_id),
        model=_text(token.model),
        slot_id=slot_id,
        flags=flags,
        pin_state=pin_state(flags),
        certificates=certs,
    )


def list_tokens(module: Path, serial: str | None = None) -> list[TokenInfo]:
    lib = load(module)
    now = dt.datetime.now(dt.UTC)
    infos = [describe_token(tok, int(slot.slot_id), now) for slot, tok in _present(lib)]
    if serial is not None:
        infos = [i for i in infos if i.serial == serial.strip()]
        if not infos:
            raise TokenNotFound(f"no token with serial {serial}")
    return infos


def certificates(token: Any, now: dt.datetime) -> list[tuple[CertInfo, bytes]]:
    try:
        with token.open() as session:
            return _read_certs(session, now)
    except (pkx.PKCS11Error, MemoryError) as err:
        raise translate(err) from err


@contextmanager
def login(lib: Any, serial: str | None, pin: str) -> Iterator[Any]:
    """One login attempt for one batch: fresh flags are checked first, a refused PIN is never retried.

    Yields an open, logged-in session; it is closed (logged out) on exit.
    """
    if not pin:
        raise PinRequired("empty PIN")
    token = find_token(lib, serial)  # fresh token object -> current flags
    check_login_allowed(int(token.flags))
    try:
        session = token.open(user_pin=pin)
    except (pkx.PKCS11Error, MemoryError) as err:
        raise translate(err) from err
    try:
        yield session
    finally:
        try:
            session.close()
        except (pkx.PKCS11Error, MemoryError):
            log.warning("closing the token session failed (token probably removed)")


def current_flags(lib: Any, serial: str | None) -> int | None:
    """The token's flags now, or None when it cannot be read (after an error, for reporting)."""
    try:
        return int(find_token(lib, serial).flags)
    except ApplianceError:
        return None


def has_private_key(session: Any, cka_id: str) -> None:
    try:
        keys = list(
            session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: bytes.fromhex(cka_id)})
        )
    except (pkx.PKCS11Error, MemoryError) as err:
        raise translate(err) from err
    if not keys:
        raise PrivateKeyNotFound(f"no private key with CKA_ID {cka_id}")


def mechanisms(token: Any) -> frozenset[str]:
    """The token's mechanism names (python-pkcs11 `Mechanism` names, e.g. SHA256_RSA_PKCS_PSS), read without
    a login (C_GetMechanismList). Vendor-defined numbers appear as hex strings."""
    try:
        found = token.slot.get_mechanisms()
    except (pkx.PKCS11Error, MemoryError) as err:
        raise translate(err) from err
    return frozenset(m.name if hasattr(m, "name") else f"0x{int(m):x}" for m in found)


def signature_mechanism(algorithm: str) -> Any:
    """The CMS signature algorithm (asn1crypto) for one of appliance.sign.policy's names."""
    from asn1crypto import algos  # type: ignore[import-untyped]

    from appliance.sign.policy import ECDSA, PKCS1, PSS

    if algorithm == PSS:  # SHA-256, MGF1 with SHA-256, salt = hash length (RFC 8017 / ETSI TS 119 312)
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


def make_signer(
    session: Any, cert_der: bytes, cka_id: str, chain: list[bytes], algorithm: str, *, raw: bool = False
) -> Any:
    """pyHanko's PKCS11Signer for the certificate's private key (paired by CKA_ID), signing with
    `algorithm` (appliance.sign.policy: PSS / PKCS1 / ECDSA); `raw`: the token gets a digest made here."""
    from asn1crypto import x509 as asn1_x509
    from pyhanko.sign.pkcs11 import PKCS11Signer

    return PKCS11Signer(
        session,
        signing_cert=asn1_x509.Certificate.load(cert_der),
        key_id=bytes.fromhex(cka_id),
        ca_chain=[asn1_x509.Certificate.load(c) for c in chain],
        other_certs_to_pull=None,
        signature_mechanism=signature_mechanism(algorithm),
        use_raw_mechanism=raw,
    )
