"""Enrolment: the box makes its own key and CSR (the key never leaves the box); the provincial CA checks
the CSR and signs a client certificate with CN = device id; the registry records serial and expiry.

Renewal is the same path with a fresh key (``make_key_and_csr(..., key_path=<new>)``): the old certificate
stays valid until the new one is installed, then it is revoked as "superseded".

The same CA signs, from CSRs made where the key lives:
- **receiver certificates** (clientAuth, CN = receiver name such as ``receiver-1``): the province's package
  receivers and telemetry ingest, named in the broker ACLs (provisioning.broker);
- **web certificates** (serverAuth) for each box's officers' page on the LAN: CN = ``box-{device id}``,
  SANs = that name, its mDNS name ``box-{device id}.local`` and the box's IP address(es). Officers' browsers
  trust them once provincial IT has installed the provincial CA on their PCs (docs/operations.md).
Nothing but the public key is taken from a CSR: the CA decides the name, the SANs and the usage.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
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


RECEIVER_NAME = re.compile(r"^[a-z][a-z0-9._-]{0,62}$")  # a broker ACL identity that is never a device id


def check_receiver_name(name: str) -> str:
    if not RECEIVER_NAME.match(name) or registry.DEVICE_ID.match(name):
        raise EnrolError(f"receiver name must look like receiver-1 (lower-case letters, digits, '.-_'), got {name!r}")
    return name


def web_name(device_id: str) -> str:
    """The box's host name (provisioning/firstboot.sh names it so), the CN of its web certificate."""
    return f"box-{registry.check_device_id(device_id)}"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def web_hosts(device_id: str, addresses: tuple[str, ...] = (), names: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The SANs of a box's web certificate: its name, its mDNS name, any extra DNS names, its IP addresses."""
    base = web_name(device_id)
    out = [base, f"{base}.local"]
    for n in names:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", n):
            raise EnrolError(f"{n!r} is not a DNS name")
        out.append(n.lower())
    for a in addresses:
        try:
            out.append(str(ipaddress.ip_address(a)))
        except ValueError as err:
            raise EnrolError(f"{a!r} is not an IP address") from err
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True, slots=True)
class Signed:
    cert: Path
    serial: str
    not_after: dt.datetime


def make_key_and_csr(
    device_id: str, key_path: Path, csr_path: Path, *, overwrite: bool = False, common_name: str | None = None
) -> Path:
    """Box side: a new P-256 key (0600, never copied off the box) and a CSR with CN = device id (or
    `common_name`, already checked by the caller: a receiver name, a box's web name).
    Refuses to replace an existing key unless `overwrite` (renewal writes the new key to a new path)."""
    cn = common_name if common_name is not None else registry.check_device_id(device_id)
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
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
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


def _sign(
    ca: Ca,
    csr: x509.CertificateSigningRequest,
    cn: str,
    *,
    days: int,
    server_hosts: tuple[str, ...] | None = None,
) -> x509.Certificate:
    """A leaf for the CSR's key: CN = `cn`; clientAuth, or serverAuth with `server_hosts` as SANs."""
    ca_cert, ca_key = load_ca(ca)
    now = dt.datetime.now(dt.UTC)
    server = server_hosts is not None
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                True,
                False,
                server and isinstance(csr.public_key(), rsa.RSAPublicKey),
                False,
                False,
                False,
                False,
                False,
                False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if server_hosts is not None:
        names: list[x509.GeneralName] = []
        for h in server_hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                names.append(x509.DNSName(h))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def issue_receiver(
    ca: Ca, con: sqlite3.Connection, csr_pem: bytes, name: str, out_dir: Path, *, days: int = 397
) -> Signed:
    """A receiver's clientAuth certificate (CN = `name`) from its CSR: ``{name}.crt`` in `out_dir`, recorded."""
    check_receiver_name(name)
    cert = _sign(ca, check_csr(csr_pem, name), name, days=days)
    path = _write_cert(cert, out_dir / f"{name}.crt")
    registry.record_service_certificate(
        con, kind="receiver", name=name, serial=cert.serial_number, not_after=cert.not_valid_after_utc
    )
    return Signed(path, registry.serial_hex(cert.serial_number), cert.not_valid_after_utc)


def issue_web(
    ca: Ca,
    con: sqlite3.Connection,
    csr_pem: bytes,
    device_id: str,
    out_dir: Path,
    *,
    addresses: tuple[str, ...] = (),
    names: tuple[str, ...] = (),
    days: int = 397,
) -> Signed:
    """A registered box's web server certificate from the CSR made on the box (CN = box-{device id}):
    ``{device_id}-web.crt`` in `out_dir`, recorded. The registry's host is added to the SANs when it is an
    IP address (a DNS name there is for Ansible, not for officers). At most 397 days: browsers refuse
    server certificates valid for longer than 398."""
    if not 1 <= days <= 397:
        raise EnrolError("a web server certificate may last at most 397 days (browsers refuse longer ones)")
    device = registry.get_device(con, device_id)
    if device.host and _is_ip(device.host):  # a DNS name for Ansible (a VPN name, say) is not what officers type
        addresses = (*addresses, device.host)
    hosts = web_hosts(device_id, addresses, names)
    cert = _sign(ca, check_csr(csr_pem, web_name(device_id)), web_name(device_id), days=days, server_hosts=hosts)
    path = _write_cert(cert, out_dir / f"{device_id}-web.crt")
    registry.record_service_certificate(
        con, kind="web", name=device_id, serial=cert.serial_number, not_after=cert.not_valid_after_utc, hosts=hosts
    )
    return Signed(path, registry.serial_hex(cert.serial_number), cert.not_valid_after_utc)
