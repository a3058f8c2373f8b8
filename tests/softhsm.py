"""Test helpers: a private SoftHSM2 token with officer and organisation certificates from a test CA.

Everything runs in subprocesses (softhsm2-util, pkcs11-tool) so the test process itself never loads
the PKCS#11 module: SoftHSM reads SOFTHSM2_CONF once per process, and python-pkcs11 0.9.5 leaks a
session on a failed login.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
PIN = "123456"
SO_PIN = "12345678"
ORG_NAME = "UBND xã Quảng Phú"
OFFICER_NAME = "Nguyễn Thị Ánh"


@dataclass(frozen=True)
class CertSpec:
    """One key pair + certificate to put on the token."""

    cka_id: str  # hex
    label: str
    common_name: str
    organisation: str = ORG_NAME
    non_repudiation: bool = True
    not_before_days: int = -30  # relative to now
    not_after_days: int = 365
    uid: str = ""  # subject UID, as Vietnamese CAs write it: "CCCD:001203004005", "MST:0101234567"
    subject_serial: str = ""  # subject serialNumber (2.5.4.5), e.g. "CMND:123456789"
    key: str = "rsa:2048"  # pkcs11-tool --key-type: "rsa:1024", "EC:prime256v1", ...
    crl_url: str = ""  # CRL distribution point written into the certificate
    ocsp_url: str = ""  # OCSP responder (Authority Information Access)


OFFICER = CertSpec(cka_id="01", label="officer", common_name=OFFICER_NAME)
ORGANISATION = CertSpec(cka_id="02", label="organisation", common_name=ORG_NAME)


@dataclass(frozen=True)
class TestCa:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    pem: Path


@dataclass(frozen=True)
class SoftToken:
    conf: Path
    tokendir: Path
    label: str
    serial: str
    pin: str
    ca: TestCa
    certs: dict[str, x509.Certificate] = field(default_factory=dict)  # label -> cert

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SOFTHSM2_CONF": str(self.conf)}


def make_ca(directory: Path, name: str = "Test CA for the appliance") -> TestCa:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name), x509.NameAttribute(NameOID.COUNTRY_NAME, "VN")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pem = directory / "ca.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TestCa(key=key, cert=cert, pem=pem)


def make_intermediate(ca: TestCa, directory: Path, name: str = "Test Intermediate CA") -> TestCa:
    """A CA certificate issued by `ca` (its PEM in `directory`), to issue token certificates under it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=100))
        .not_valid_after(now + dt.timedelta(days=1000))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    pem = directory / "intermediate.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TestCa(key=key, cert=cert, pem=pem)


def issue(ca: TestCa, public_key: PublicKey, spec: CertSpec) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    attrs = [
        x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, spec.organisation),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
    ]
    if spec.uid:
        attrs.append(x509.NameAttribute(NameOID.USER_ID, spec.uid))
    if spec.subject_serial:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, spec.subject_serial))
    builder = x509.CertificateBuilder()
    if spec.crl_url:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(spec.crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    if spec.ocsp_url:
        access = x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(spec.ocsp_url)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
    return (
        builder.subject_name(x509.Name(attrs))
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=spec.not_before_days))
        .not_valid_after(now + dt.timedelta(days=spec.not_after_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=spec.non_repudiation,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )


def _run(cmd: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({done.returncode}): {done.stderr.strip()} {done.stdout.strip()}")
    return done.stdout


def write_conf(directory: Path) -> tuple[Path, Path]:
    tokendir = directory / "tokens"
    tokendir.mkdir(parents=True, exist_ok=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokendir}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
    )
    return conf, tokendir


def make_token(
    directory: Path,
    specs: tuple[CertSpec, ...] = (OFFICER, ORGANISATION),
    *,
    label: str = "edge-token",
    ca: TestCa | None = None,
    conf: Path | None = None,
) -> SoftToken:
    """Initialise a SoftHSM token in `directory` (or in the store of `conf`) with one key+cert per spec."""
    directory.mkdir(parents=True, exist_ok=True)
    if conf is None:
        conf, tokendir = write_conf(directory)
    else:
        tokendir = Path(conf.read_text().split("=", 1)[1].split("\n", 1)[0].strip())
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    ca = ca or make_ca(directory)
    _run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SO_PIN], env)
    serial = token_serial(env, label)
    certs: dict[str, x509.Certificate] = {}
    base = ["pkcs11-tool", "--module", str(MODULE), "--token-label", label, "--login", "--pin", PIN]
    for spec in specs:
        _run([*base, "--keypairgen", "--key-type", spec.key, "--id", spec.cka_id, "--label", spec.label], env)
        pub_der = directory / f"{label}-{spec.label}.pub.der"
        _run([*base, "--read-object", "--type", "pubkey", "--id", spec.cka_id, "-o", str(pub_der)], env)
        public_key = serialization.load_der_public_key(pub_der.read_bytes())
        assert isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
        cert = issue(ca, public_key, spec)
        cert_der = directory / f"{label}-{spec.label}.crt.der"
        cert_der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        _run(
            [
                *base,
                "--write-object",
                str(cert_der),
                "--type",
                "cert",
                "--id",
                spec.cka_id,
                "--label",
                spec.label,
            ],
            env,
        )
        certs[spec.label] = cert
    return SoftToken(conf=conf, tokendir=tokendir, label=label, serial=serial, pin=PIN, ca=ca, certs=certs)


def token_serial(env: dict[str, str], label: str) -> str:
    out = _run(["softhsm2-util", "--show-slots"], env)
    for block in out.split("\nSlot ")[1:]:
        info = dict((k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in block.splitlines()) if v.strip())
        if info.get("Label") == label and info.get("Serial number"):
            return info["Serial number"]
    raise RuntimeError(f"token {label} not found in:\n{out}")


def nss_db(directory: Path, ca_pem: Path) -> Path:
    """An NSS database that trusts the test CA (for pdfsig -nssdir)."""
    db = directory / "nssdb"
    db.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    _run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], env)
    _run(["certutil", "-A", "-d", f"sql:{db}", "-n", "test-ca", "-t", "CT,C,C", "-a", "-i", str(ca_pem)], env)
    return db


def pdfsig(pdf: Path, db: Path) -> str:
    """pdfsig's report (it exits 0 even on a bad digest: callers parse the text).

    No `-no-ocsp`: poppler 22.12 then reports "Unknown issue with Certificate" for a good chain; the test
    certificates carry no OCSP URL, so nothing is fetched anyway.
    """
    done = subprocess.run(["pdfsig", "-nssdir", f"sql:{db}", str(pdf)], capture_output=True, text=True, check=False)
    return done.stdout + done.stderr


def simple_pdf(path: Path, pages: int = 1, *, pdfa: bool = True, text: str = "Giấy xác nhận", rotate: int = 0) -> Path:
    """A small PDF (A4) made with pikepdf; with pdfa=True it carries PDF/A-2b identification in XMP;
    `rotate` sets /Rotate on every page."""
    import pikepdf

    pdf = pikepdf.new()
    font = pdf.make_indirect(
        pikepdf.Dictionary(Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica)
    )
    for i in range(pages):
        content = f"BT /F1 14 Tf 72 700 Td ({text.encode('ascii', 'replace').decode()} {i + 1}) Tj ET".encode()
        page = pikepdf.Dictionary(
            Type=pikepdf.Name.Page,
            MediaBox=[0, 0, 595.28, 841.89],
            Resources=pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font)),
            Contents=pdf.make_stream(content),
        )
        if rotate:
            page.Rotate = rotate
        pdf.pages.append(pikepdf.Page(page))
    if pdfa:
        with pdf.open_metadata(set_pikepdf_as_editor=False) as meta:
            meta["pdfaid:part"] = "2"
            meta["pdfaid:conformance"] = "B"
            meta["dc:title"] = "Tài liệu thử"
    pdf.save(path)
    return path


# --- pytest fixtures (import them into a test module: `from tests.softhsm import hsm, ...`) ----------
SPY = Path("/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so")
EXPIRED = CertSpec(cka_id="11", label="expired", common_name="Trần Văn Cũ", not_before_days=-800, not_after_days=-1)
NO_NON_REPUDIATION = CertSpec(cka_id="12", label="auth-only", common_name=ORG_NAME, non_repudiation=False)


def _tools() -> None:
    from tests.conftest import need

    need("softhsm2-util", "pkcs11-tool")
    if not MODULE.exists():
        from tests.conftest import IN_CI

        (pytest.fail if IN_CI else pytest.skip)(f"SoftHSM2 module {MODULE} missing")


@pytest.fixture(scope="session")
def shared_token(tmp_path_factory: pytest.TempPathFactory) -> SoftToken:
    """One token for the session with the officer and organisation certificates (read-mostly tests)."""
    _tools()
    return make_token(tmp_path_factory.mktemp("hsm"))


def trust_settings(monkeypatch: pytest.MonkeyPatch, *cas: TestCa, data_dir: Path | None = None) -> None:
    """APPLIANCE_SIGN__* so the CLI trusts these test CAs the way a box would: the PEM files configured
    and their SHA-256 pinned (sign.trusted_root_sha256)."""
    import json

    monkeypatch.setenv("APPLIANCE_SIGN__TRUST_ROOTS", json.dumps([str(ca.pem) for ca in cas]))
    monkeypatch.setenv("APPLIANCE_SIGN__TRUSTED_ROOT_SHA256", json.dumps([ca_sha256(ca) for ca in cas]))
    if data_dir is not None:
        monkeypatch.setenv("APPLIANCE_DATA_DIR", str(data_dir))


def ca_sha256(ca: TestCa) -> str:
    return ca.cert.fingerprint(hashes.SHA256()).hex()


def policy_for(*cas: TestCa, cache_dir: Path | None = None, **overrides: object) -> object:
    """An appliance.sign.policy.SignPolicy trusting these test CAs (configured + pinned)."""
    from appliance.sign.policy import SignPolicy

    values: dict[str, object] = {
        "trust_roots": tuple(str(ca.pem) for ca in cas),
        "trusted_root_sha256": tuple(ca_sha256(ca) for ca in cas),
        "cache_dir": str(cache_dir) if cache_dir else None,
        "revocation_timeout_s": 2.0,
        **overrides,
    }
    return SignPolicy(**values)  # type: ignore[arg-type]


@pytest.fixture
def hsm(shared_token: SoftToken, monkeypatch: pytest.MonkeyPatch) -> SoftToken:
    monkeypatch.setenv("SOFTHSM2_CONF", str(shared_token.conf))
    trust_settings(monkeypatch, shared_token.ca)
    return shared_token


@pytest.fixture
def fresh_hsm(tmp_path: Path, shared_token: SoftToken, monkeypatch: pytest.MonkeyPatch) -> SoftToken:
    """A token of its own, for tests that change the token (wrong PIN, removal)."""
    tok = make_token(tmp_path / "hsm", (OFFICER,), ca=shared_token.ca)
    monkeypatch.setenv("SOFTHSM2_CONF", str(tok.conf))
    trust_settings(monkeypatch, shared_token.ca)
    return tok


@pytest.fixture(scope="session")
def odd_token(tmp_path_factory: pytest.TempPathFactory, shared_token: SoftToken) -> SoftToken:
    """A token with an expired certificate and one without non-repudiation."""
    return make_token(
        tmp_path_factory.mktemp("odd"), (EXPIRED, NO_NON_REPUDIATION), label="odd-token", ca=shared_token.ca
    )


@pytest.fixture(scope="session")
def nssdb(tmp_path_factory: pytest.TempPathFactory, shared_token: SoftToken) -> Path:
    from tests.conftest import need

    need("certutil", "pdfsig")
    return nss_db(tmp_path_factory.mktemp("nss"), shared_token.ca.pem)


# --- a real RFC 3161 timestamp server on loopback (pyHanko's DummyTimeStamper behind http.server) ---------
def issue_tsa(ca: TestCa, name: str = "Test TSA") -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A TSA certificate from the test CA: digitalSignature + nonRepudiation, critical timeStamping EKU."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name), x509.NameAttribute(NameOID.COUNTRY_NAME, "VN")])
        )
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return cert, key


@dataclass
class TsaServer:
    """An HTTP RFC 3161 server on 127.0.0.1 in a thread; `requests` counts the answered requests."""

    url: str
    requests: list[int]


@contextlib.contextmanager
def tsa_server(ca: TestCa) -> Iterator[TsaServer]:
    import http.server
    import threading

    from asn1crypto import keys as asn1_keys
    from asn1crypto import tsp
    from asn1crypto import x509 as asn1_x509
    from pyhanko.sign.timestamps import DummyTimeStamper

    cert, key = issue_tsa(ca)
    stamper = DummyTimeStamper(
        tsa_cert=asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)),
        tsa_key=asn1_keys.PrivateKeyInfo.load(
            key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        ),
        certs_to_embed=[asn1_x509.Certificate.load(ca.cert.public_bytes(serialization.Encoding.DER))],
    )
    answered: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Type") != "application/timestamp-query":
                self.send_error(415)
                return
            reply = stamper.request_tsa_response(tsp.TimeStampReq.load(body)).dump()
            answered.append(len(reply))
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield TsaServer(f"http://127.0.0.1:{server.server_address[1]}/tsa", answered)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """A loopback URL nobody listens on (bound then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/tsa"


# --- CRLs and a plain file server on loopback (CRL distribution points) ---------------------------------
def make_crl(
    ca: TestCa, revoked: tuple[x509.Certificate, ...] = (), *, last_update_days: int = -1, next_update_days: int = 7
) -> bytes:
    """A DER CRL signed by the test CA listing `revoked`."""
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now + dt.timedelta(days=last_update_days))
        .next_update(now + dt.timedelta(days=next_update_days))
    )
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(now - dt.timedelta(hours=1))
            .build()
        )
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@dataclass
class FileServer:
    """GET /<name> answers files[name] (200) or 404; `hits` lists the paths asked for."""

    base: str
    files: dict[str, bytes]
    hits: list[str]

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"


@contextlib.contextmanager
def file_server(files: dict[str, bytes] | None = None) -> Iterator[FileServer]:
    import http.server
    import threading

    served: dict[str, bytes] = dict(files or {})
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            name = self.path.lstrip("/")
            hits.append(name)
            body = served.get(name)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/pkix-crl")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FileServer(f"http://127.0.0.1:{server.server_address[1]}", served, hits)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class OcspServer:
    """An OCSP responder on loopback answering for the test CA (signed by the CA itself): `certs` maps
    serial -> certificate it knows, `revoked` the serials it calls revoked; unknown serials get 'unknown'."""

    url: str
    certs: dict[int, x509.Certificate]
    revoked: set[int]
    hits: list[int]


@contextlib.contextmanager
def ocsp_server(ca: TestCa) -> Iterator[OcspServer]:
    import http.server
    import threading

    from cryptography.x509 import ocsp

    state = OcspServer("", {}, set(), [])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            request = ocsp.load_der_ocsp_request(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            state.hits.append(request.serial_number)
            now = dt.datetime.now(dt.UTC)
            cert = state.certs.get(request.serial_number)
            if cert is None:
                body = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
            else:
                revoked = request.serial_number in state.revoked
                body = (
                    ocsp.OCSPResponseBuilder()
                    .add_response(
                        cert=cert,
                        issuer=ca.cert,
                        algorithm=hashes.SHA1(),
                        cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
                        this_update=now - dt.timedelta(minutes=5),
                        next_update=now + dt.timedelta(days=1),
                        revocation_time=now - dt.timedelta(hours=2) if revoked else None,
                        revocation_reason=None,
                    )
                    .responder_id(ocsp.OCSPResponderEncoding.HASH, ca.cert)
                    .sign(ca.key, hashes.SHA256())
                )
            data = body.public_bytes(serialization.Encoding.DER)
            self.send_response(200)
            self.send_header("Content-Type", "application/ocsp-response")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/ocsp"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
