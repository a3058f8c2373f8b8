"""Revocation and the CRL the broker checks (mosquitto ``crlfile``, EMQX ``ssl_options.crlfile``/CRL cache).

The CRL is short-lived (``next_update`` in days): provincial IT regenerates it monthly (and on every
revocation) and pushes it to the broker; an expired CRL makes OpenSSL refuse every client, which is
loud rather than silently permissive.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import CRLEntryExtensionOID

from provisioning import registry
from provisioning.ca import Ca
from provisioning.enrol import load_ca

REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key_compromise": x509.ReasonFlags.key_compromise,
    "superseded": x509.ReasonFlags.superseded,
    "cessation_of_operation": x509.ReasonFlags.cessation_of_operation,
    "affiliation_changed": x509.ReasonFlags.affiliation_changed,
}


def revoke(con: sqlite3.Connection, serial: str, reason: str = "unspecified") -> registry.CertRecord:
    """Mark a device certificate revoked in the registry (idempotent); regenerate the CRL afterwards."""
    if reason not in REASONS:
        raise registry.RegistryError(f"reason must be one of {sorted(REASONS)}")
    return registry.mark_revoked(con, serial, reason)


def revoke_serial(con: sqlite3.Connection, serial: str, reason: str = "unspecified") -> str:
    """Revoke any certificate the CA issued by serial: a device's, a receiver's or a box's web certificate."""
    if reason not in REASONS:
        raise registry.RegistryError(f"reason must be one of {sorted(REASONS)}")
    if registry.service_certificate(con, serial) is not None:
        return registry.mark_service_revoked(con, serial, reason).serial
    return registry.mark_revoked(con, serial, reason).serial


def supersede(con: sqlite3.Connection, serial: str) -> list[str]:
    """Revoke as superseded every other unrevoked certificate of the holder of `serial` (idempotent).

    The holder is the same box for a device certificate, and the same kind and name for a service
    certificate: a box's web certificates, or one receiver's. Called once the new certificate is
    installed and in use, so the one it replaced -- and any issued but never installed -- stop being valid.
    """
    new = registry.service_certificate(con, serial)
    if new is not None:
        if new.revoked_at is not None:
            raise registry.RegistryError(f"certificate {new.serial} is itself revoked")
        siblings = registry.service_certificates(con, kind=new.kind, name=new.name)
        done = [c.serial for c in siblings if c.revoked_at is None and c.serial != new.serial]
        for s in done:
            registry.mark_service_revoked(con, s, "superseded")
        return done
    rec = registry.certificate(con, serial)
    if rec.revoked_at is not None:
        raise registry.RegistryError(f"certificate {rec.serial} is itself revoked")
    done = [
        c.serial for c in registry.certificates(con, rec.device_id) if c.revoked_at is None and c.serial != rec.serial
    ]
    for s in done:
        registry.mark_revoked(con, s, "superseded")
    return done


def revoke_device(con: sqlite3.Connection, device_id: str, reason: str = "cessation_of_operation") -> list[str]:
    """Revoke every unrevoked certificate of a device (a stolen or retired box)."""
    done = []
    for rec in registry.certificates(con, device_id):
        if rec.revoked_at is None:
            revoke(con, rec.serial, reason)
            done.append(rec.serial)
    return done


def build_crl(ca: Ca, con: sqlite3.Connection, *, days: int = 35) -> x509.CertificateRevocationList:
    ca_cert, ca_key = load_ca(ca)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(registry.next_crl_number(con)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    revoked = [(r.serial, r.revoked_at, r.reason) for r in registry.certificates(con) if r.revoked_at is not None]
    revoked += [
        (r.serial, r.revoked_at, r.reason) for r in registry.service_certificates(con) if r.revoked_at is not None
    ]
    for serial, revoked_at, reason in revoked:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(int(serial, 16))
            .revocation_date(dt.datetime.fromisoformat(revoked_at))
            .add_extension(x509.CRLReason(REASONS.get(reason or "", x509.ReasonFlags.unspecified)), critical=False)
            .build()
        )
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(ca_key, hashes.SHA256())


def write_crl(ca: Ca, con: sqlite3.Connection, path: Path, *, days: int = 35) -> Path:
    """Write the CRL (PEM) atomically, so a broker reloading it never reads half a file."""
    crl = build_crl(ca, con, days=days)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    tmp.chmod(0o644)
    tmp.replace(path)
    return path


def revoked_serials(crl_pem: bytes) -> dict[str, str]:
    """Serial (hex) -> reason, read back from a CRL file."""
    crl = x509.load_pem_x509_crl(crl_pem)
    out: dict[str, str] = {}
    for entry in crl:
        try:
            reason = entry.extensions.get_extension_for_oid(CRLEntryExtensionOID.CRL_REASON).value
            name = reason.reason.name if isinstance(reason, x509.CRLReason) else "unspecified"
        except x509.ExtensionNotFound:
            name = "unspecified"
        out[registry.serial_hex(entry.serial_number)] = name
    return out
