"""Enrolment: the box makes its own key and CSR (the key never leaves the box); the provincial CA checks
the CSR and signs a client certificate with CN = device id; the registry records serial and expiry.

Renewal is the same path with a fresh key (``make_key_and_csr(..., key_path=<new>)``): the old certificate
stays valid until the new one is installed, then it is revoked as "superseded".
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning import registry
from provisioning.ca import Ca


class EnrolError(ValueError):
    """A CSR the CA will not sign."""


@dataclass(frozen=True, slots=True)
class Signed:
    cert: Path
    serial: str
    not_after: dt.datetime


def make_key_and_csr(device_id: str, key_path: Path, csr_path: Path, *, overwrite: bool = False) -> Path:
    """Box side: a new P-256 key (0600, never copied off the box) and a CSR with CN = device id.
    Refuses to replace an existing key unless `overwrite` (renewal writes the new key to a new path)."""
    registry.check_device_id(device_id)
    if key_path.exists() and not overwrite:
        raise EnrolError(f"{key_path} exists: write a renewal key to a new path")
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .sign(key, hashes.SHA256())
    )
    csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return csr_path


def load_ca(ca: Ca) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey]:
    cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise EnrolError("the CA key must be EC or RSA")
    return cert, key


def check_csr(csr_pem: bytes, device_id: str) -> x509.CertificateSigningRequest:
    """The CSR is well-formed, self-signed by its key, asks for CN = device id and uses a strong key."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as err:
        raise EnrolError(f"not a PEM certificate request: {err}") from err
    if not csr.is_signature_valid:
        raise EnrolError("the CSR's signature does not match its key")
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1 or cns[0].value != device_id:
        got = [c.value for c in cns]
        raise EnrolError(f"the CSR asks for CN {got}, expected {device_id!r}")
    public = csr.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        if public.curve.key_size < 256:
            raise EnrolError("EC keys must be P-256 or larger")
    elif isinstance(public, rsa.RSAPublicKey):
        if public.key_size < 2048:
            raise EnrolError("RSA keys must be 2048 bits or larger")
    else:
        raise EnrolError("only EC and RSA keys are accepted")
    return csr


def sign_csr(ca: Ca, csr_pem: bytes, device_id: str, *, days: int = 397) -> x509.Certificate:
    """CA side: a clientAuth certificate for the CSR's key with CN = device id (and nothing else taken
    from the CSR)."""
    csr = check_csr(csr_pem, device_id)
    ca_cert, ca_key = load_ca(ca)
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def enrol(ca: Ca, con: sqlite3.Connection, csr_pem: bytes, device_id: str, out_dir: Path, *, days: int = 397) -> Signed:
    """Sign a registered device's CSR, write ``{device_id}.crt`` into `out_dir` and record it."""
    registry.get_device(con, device_id)  # only registered devices get a certificate
    cert = sign_csr(ca, csr_pem, device_id, days=days)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{device_id}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    registry.record_certificate(con, device_id, cert.serial_number, cert.not_valid_before_utc, cert.not_valid_after_utc)
    return Signed(path, registry.serial_hex(cert.serial_number), cert.not_valid_after_utc)
