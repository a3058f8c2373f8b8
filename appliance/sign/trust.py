"""Which roots are trusted, and the trust path of a certificate (before signing and when verifying).

The rule for a root (docs/signing.md "Trust anchors"): a certificate is a trust anchor only when it is
self-signed (its signature verifies with its own key), a CA (basicConstraints cA), inside its validity
period, and its SHA-256 is pinned — by the product (`appliance.sign.anchors`: Ban Cơ yếu G2, NEAC) or by
provincial IT in `sign.trusted_root_sha256`. It may come from a configured PEM/DER file
(`sign.trust_roots`), from the token (tokens often carry their chain), or from the certificates embedded
in a signed PDF: the pin decides, not the place. A PEM file alone never makes a root trusted, so a root
dropped into a directory, or an impostor bearing a national root's name, is refused (and logged).
Non-self-signed CA certificates (intermediates) are path-building material only: a path must still end
at an anchor.

`explicit_store(paths)` is the other mode: every certificate in the files is an anchor as given. It is
for callers that name their roots themselves (`appliance verify --trust CA.pem`, the province receiver's
own configuration, tests), never for the box's settings.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from appliance.sign.anchors import normalise_fingerprint, pinned

log = logging.getLogger(__name__)


def sha256(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM (one or more) or DER file."""
    data = path.read_bytes()
    if b"-----BEGIN" in data:
        return list(x509.load_pem_x509_certificates(data))
    return [x509.load_der_x509_certificate(data)]


def self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if isinstance(cert.signature_algorithm_parameters, padding.PSS):
                key.verify(
                    cert.signature,
                    cert.tbs_certificate_bytes,
                    cert.signature_algorithm_parameters,
                    cert.signature_hash_algorithm,  # type: ignore[arg-type]
                )
            else:
                key.verify(
                    cert.signature,
                    cert.tbs_certificate_bytes,
                    padding.PKCS1v15(),
                    cert.signature_hash_algorithm,  # type: ignore[arg-type]
                )
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))  # type: ignore[arg-type]
        else:
            return False
    except (InvalidSignature, TypeError, ValueError):
        return False
    return True


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def common_name(name: x509.Name) -> str:
    from cryptography.x509.oid import NameOID

    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else name.rfc4514_string()


@dataclass(frozen=True, slots=True)
class TrustStore:
    anchors: tuple[x509.Certificate, ...] = ()
    intermediates: tuple[x509.Certificate, ...] = ()
    pins: frozenset[str] = frozenset()  # extra pinned roots (configured); the shipped ones always count
    explicit: bool = False  # every given root is an anchor (verify --trust, the province's own roots)
    refused: tuple[str, ...] = field(default=())  # why configured certificates were not taken as anchors

    def is_pinned(self, fingerprint: str) -> bool:
        return fingerprint in self.pins or pinned(fingerprint) is not None

    def with_candidates(self, certs: Iterable[x509.Certificate], now: dt.datetime) -> TrustStore:
        """This store plus what `certs` (from a token or a CMS) may add: pinned roots, intermediates."""
        anchors, intermediates = list(self.anchors), list(self.intermediates)
        known = {sha256(c) for c in [*anchors, *intermediates]}
        for cert in certs:
            fp = sha256(cert)
            if fp in known or not is_ca(cert):
                continue
            known.add(fp)
            if self_signed(cert):
                if self.is_pinned(fp) and cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                    anchors.append(cert)
            else:
                intermediates.append(cert)
        return TrustStore(tuple(anchors), tuple(intermediates), self.pins, self.explicit, self.refused)


def explicit_store(paths: Sequence[Path]) -> TrustStore:
    """Every certificate in these files is an anchor (the caller named them; see the module doc)."""
    anchors = [c for p in paths for c in load_certificates(p)]
    return TrustStore(anchors=tuple(anchors), explicit=True)


def configured_store(paths: Sequence[Path], extra_pins: Sequence[str], now: dt.datetime) -> TrustStore:
    """The box's trust from settings: pinned roots are anchors, other CA certificates intermediates."""
    pins = frozenset(normalise_fingerprint(p) for p in extra_pins)
    anchors: list[x509.Certificate] = []
    intermediates: list[x509.Certificate] = []
    refused: list[str] = []
    for path in paths:
        try:
            certs = load_certificates(path)
        except (OSError, ValueError) as err:
            refused.append(f"{path}: unreadable ({type(err).__name__})")
            log.warning("trust root file %s cannot be read: %s", path, err)
            continue
        for cert in certs:
            fp, name = sha256(cert), common_name(cert.subject)
            if not is_ca(cert):
                refused.append(f"{path}: {name} is not a CA certificate")
            elif not self_signed(cert):
                intermediates.append(cert)
            elif not (fp in pins or pinned(fp) is not None):
                refused.append(f"{path}: root {name} (SHA-256 {fp}) is not pinned")
                log.warning("configured root %s in %s is not pinned (SHA-256 %s): not trusted", name, path, fp)
            elif not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                refused.append(f"{path}: root {name} is outside its validity period")
            else:
                anchors.append(cert)
    return TrustStore(tuple(anchors), tuple(intermediates), pins, False, tuple(refused))


def asn1(cert: x509.Certificate) -> Any:
    from asn1crypto import x509 as asn1_x509  # type: ignore[import-untyped]

    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def from_asn1(cert: Any) -> x509.Certificate:
    return x509.load_der_x509_certificate(cert.dump())


def validation_context(store: TrustStore, now: dt.datetime) -> Any:
    """pyHanko's ValidationContext for this store: no network fetching; revocation is ours (revocation.py)."""
    from pyhanko_certvalidator import ValidationContext

    return ValidationContext(
        trust_roots=[asn1(c) for c in store.anchors],
        other_certs=[asn1(c) for c in store.intermediates],
        allow_fetching=False,
        moment=now,
        revocation_mode="soft-fail",
    )


@dataclass(frozen=True, slots=True)
class TrustPath:
    certificates: tuple[x509.Certificate, ...]  # leaf first, the anchor last

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(common_name(c.subject) for c in self.certificates)

    @property
    def anchor(self) -> x509.Certificate:
        return self.certificates[-1]


class PathProblem(Exception):
    """No valid path: `reason` is 'untrusted' or 'invalid' (a certificate on the way is expired, bad, ...)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def trust_path(cert: x509.Certificate, store: TrustStore, now: dt.datetime) -> TrustPath:
    """The validated path from `cert` to an anchor of the store (validity of every certificate at `now`,
    signatures, CA constraints); PathProblem otherwise. Revocation is not looked at here."""
    from pyhanko_certvalidator import CertificateValidator
    from pyhanko_certvalidator import errors as cv_errors

    if not store.anchors:
        detail = "no trusted root is available (none pinned on the token or configured)"
        if store.refused:
            detail += "; refused: " + "; ".join(store.refused)
        raise PathProblem("untrusted", detail)
    validator = CertificateValidator(asn1(cert), validation_context=validation_context(store, now))
    try:
        path = asyncio.run(validator.async_validate_path())
    except cv_errors.PathBuildingError as err:
        raise PathProblem("untrusted", f"no path to a trusted root: {err}") from err
    except (cv_errors.ExpiredError, cv_errors.NotYetValidError) as err:
        raise PathProblem("invalid", f"a certificate on the path is outside its validity: {err}") from err
    except cv_errors.PathValidationError as err:
        raise PathProblem("invalid", f"the path does not validate: {err}") from err
    certs = [from_asn1(c) for c in path.iter_certs(include_root=True)]
    certs.reverse()  # iter_certs goes root -> leaf
    return TrustPath(tuple(certs))
