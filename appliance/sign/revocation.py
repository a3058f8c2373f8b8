"""Is a certificate revoked? OCSP or CRL when the link allows, a cached answer otherwise; offline says so.

`check(cert, issuer, options, now)` asks, in order: the OCSP responders of the certificate's Authority
Information Access, then the CRL distribution points (http/https only). Every answer is verified (CRL
signed by the issuer with the issuer's name; OCSP response signed by the issuer or by a responder the
issuer delegated with the OCSPSigning usage, for this serial) and then cached under `options.cache_dir`
(one file per CRL URL, one per certificate for OCSP). When the network gives no verified answer, the
cache is read: a cached answer that says revoked stays revoked; a "good" answer counts only until its
nextUpdate. Otherwise the status is "unknown" with `offline` set and a detail that names what failed —
the caller decides whether that blocks (settings.sign.revocation_unknown). Never raises for network or
parsing trouble: the result says what happened.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

log = logging.getLogger(__name__)

GOOD, REVOKED, UNKNOWN, NOT_CHECKED = "good", "revoked", "unknown", "not_checked"


@dataclass(frozen=True, slots=True)
class RevocationOptions:
    cache_dir: Path | None  # None: no cache (nothing read, nothing written)
    fetch: bool = True  # False: cached answers only
    timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Revocation:
    status: str  # good | revoked | unknown | not_checked
    source: str  # ocsp | crl | ocsp-cache | crl-cache | "" (none)
    detail: str  # English, for logs and the JSON report
    offline: bool = False  # no verified answer came from the network
    revoked_at: str | None = None  # ISO 8601
    this_update: str | None = None  # of the answer used
    next_update: str | None = None
    url: str = ""

    @property
    def ok(self) -> bool:
        return self.status == GOOD


NOT_CHECKED_RESULT = Revocation(NOT_CHECKED, "", "revocation was not checked")


def _urls(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """(OCSP responder URLs, CRL distribution point URLs), http(s) only."""
    ocsp_urls: list[str] = []
    crl_urls: list[str] = []
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        ocsp_urls = [
            str(d.access_location.value)
            for d in aia
            if d.access_method == AuthorityInformationAccessOID.OCSP
            and isinstance(d.access_location, x509.UniformResourceIdentifier)
        ]
    except x509.ExtensionNotFound:
        pass
    try:
        cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        for point in cdp:
            for name in point.full_name or []:
                if isinstance(name, x509.UniformResourceIdentifier):
                    crl_urls.append(str(name.value))
    except x509.ExtensionNotFound:
        pass
    web = ("http://", "https://")
    return [u for u in ocsp_urls if u.lower().startswith(web)], [u for u in crl_urls if u.lower().startswith(web)]


def _http(url: str, timeout_s: float, body: bytes | None = None, content_type: str = "") -> bytes:
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    if content_type:
        request.add_header("Content-Type", content_type)
    with urllib.request.urlopen(request, timeout=timeout_s) as reply:  # noqa: S310 - http(s) checked above
        data: bytes = reply.read(16 * 1024 * 1024)
        return data


def _verify_signature(key: object, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm | None) -> bool:
    if algorithm is None:
        return False
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# --- CRL --------------------------------------------------------------------------------------
def _crl_answer(
    der: bytes, cert: x509.Certificate, issuer: x509.Certificate, now: dt.datetime, source: str, url: str
) -> Revocation | None:
    """The answer a CRL gives, or None when it is not a valid CRL of this issuer (or a stale 'good')."""
    try:
        crl = x509.load_der_x509_crl(der)
    except ValueError:
        try:
            crl = x509.load_pem_x509_crl(der)
        except ValueError:
            return None
    if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
        log.warning("CRL from %s is not signed by %s", url, issuer.subject.rfc4514_string())
        return None
    this_update, next_update = crl.last_update_utc, crl.next_update_utc
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is not None:
        return Revocation(
            REVOKED,
            source,
            f"serial {cert.serial_number:x} is on the CRL from {url} (revoked {entry.revocation_date_utc:%Y-%m-%d})",
            offline=source.endswith("cache"),
            revoked_at=_iso(entry.revocation_date_utc),
            this_update=_iso(this_update),
            next_update=_iso(next_update),
            url=url,
        )
    if next_update is not None and next_update < now:
        return None  # a stale list cannot say "good"
    return Revocation(
        GOOD,
        source,
        f"not on the CRL from {url} (issued {this_update:%Y-%m-%d %H:%M} UTC)",
        offline=source.endswith("cache"),
        this_update=_iso(this_update),
        next_update=_iso(next_update),
        url=url,
    )


# --- OCSP -------------------------------------------------------------------------------------
def _ocsp_responder_ok(response: ocsp.OCSPResponse, issuer: x509.Certificate, now: dt.datetime) -> bool:
    tbs, signature, algorithm = response.tbs_response_bytes, response.signature, response.signature_hash_algorithm
    if _verify_signature(issuer.public_key(), signature, tbs, algorithm):
        return True
    for delegate in response.certificates:  # a responder the issuer delegated (RFC 6960 § 4.2.2.2)
        try:
            eku = delegate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING not in eku or delegate.issuer != issuer.subject:
            continue
        if not delegate.not_valid_before_utc <= now <= delegate.not_valid_after_utc:
            continue
        if _verify_signature(
            issuer.public_key(),
            delegate.signature,
            delegate.tbs_certificate_bytes,
            delegate.signature_hash_algorithm,
        ) and _verify_signature(delegate.public_key(), signature, tbs, algorithm):
            return True
    return False


def _ocsp_answer(
    der: bytes, cert: x509.Certificate, issuer: x509.Certificate, now: dt.datetime, source: str, url: str
) -> Revocation | None:
    try:
        response = ocsp.load_der_ocsp_response(der)
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            return None
        if response.serial_number != cert.serial_number or not _ocsp_responder_ok(response, issuer, now):
            return None
        status = response.certificate_status
        this_update, next_update = response.this_update_utc, response.next_update_utc
        revoked_at = response.revocation_time_utc
    except ValueError:
        return None
    offline = source.endswith("cache")
    if status == ocsp.OCSPCertStatus.REVOKED:
        return Revocation(
            REVOKED,
            source,
            f"the OCSP responder {url} says revoked",
            offline,
            _iso(revoked_at),
            _iso(this_update),
            _iso(next_update),
            url,
        )
    if status != ocsp.OCSPCertStatus.GOOD:
        return None
    fresh_until = next_update or this_update + dt.timedelta(days=1)  # no nextUpdate: a day at most
    if fresh_until < now:
        return None
    detail = f"the OCSP responder {url} says good ({this_update:%Y-%m-%d %H:%M} UTC)"
    return Revocation(GOOD, source, detail, offline, None, _iso(this_update), _iso(next_update), url)


def _ocsp_request(cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())  # noqa: S303 - CertID
    return builder.build().public_bytes(serialization.Encoding.DER)


# --- the check --------------------------------------------------------------------------------
def _cache_file(options: RevocationOptions, kind: str, key: str) -> Path | None:
    if options.cache_dir is None:
        return None
    return options.cache_dir / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:32]}.der"


def _store(path: Path | None, der: bytes) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(der)
        tmp.replace(path)
    except OSError as err:
        log.warning("cannot cache a revocation answer in %s: %s", path.parent, err.strerror)


def _load(path: Path | None) -> bytes | None:
    try:
        return path.read_bytes() if path is not None and path.is_file() else None
    except OSError:
        return None


def check(cert: x509.Certificate, issuer: x509.Certificate, options: RevocationOptions, now: dt.datetime) -> Revocation:
    """The certificate's revocation status from the network when it answers, else from the cache."""
    ocsp_urls, crl_urls = _urls(cert)
    if not ocsp_urls and not crl_urls:
        return Revocation(UNKNOWN, "", "the certificate names no OCSP responder and no CRL distribution point")
    serial_key = f"{issuer.subject.rfc4514_string()}#{cert.serial_number:x}"
    failures: list[str] = []
    if options.fetch:
        for url in ocsp_urls:
            try:
                der = _http(url, options.timeout_s, _ocsp_request(cert, issuer), "application/ocsp-request")
            except (OSError, urllib.error.URLError, ValueError) as err:
                failures.append(f"OCSP {url}: {type(err).__name__}")
                continue
            answer = _ocsp_answer(der, cert, issuer, now, "ocsp", url)
            if answer is not None:
                _store(_cache_file(options, "ocsp", serial_key), der)
                return answer
            failures.append(f"OCSP {url}: no valid answer")
        for url in crl_urls:
            try:
                der = _http(url, options.timeout_s)
            except (OSError, urllib.error.URLError, ValueError) as err:
                failures.append(f"CRL {url}: {type(err).__name__}")
                continue
            answer = _crl_answer(der, cert, issuer, now, "crl", url)
            if answer is not None:
                _store(_cache_file(options, "crl", url), der)
                return answer
            failures.append(f"CRL {url}: not a valid, current CRL of the issuer")
    else:
        failures.append("network checks are off (sign.revocation_fetch = false)")
    for url in ocsp_urls:
        cached = _load(_cache_file(options, "ocsp", serial_key))
        answer = _ocsp_answer(cached, cert, issuer, now, "ocsp-cache", url) if cached else None
        if answer is not None:
            return answer
    for url in crl_urls:
        cached = _load(_cache_file(options, "crl", url))
        answer = _crl_answer(cached, cert, issuer, now, "crl-cache", url) if cached else None
        if answer is not None:
            return answer
    return Revocation(UNKNOWN, "", "offline: " + "; ".join(failures) + "; no cached answer still current", offline=True)
