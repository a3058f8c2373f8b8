"""The provincial CA's other certificates and the broker's generated files, through the CLI: a box's web
server certificate (SANs, serverAuth, chain), a receiver's client certificate, their revocation in the CRL;
docs/protocol.md's ACLs are exactly what `broker-acl` prints; the Ansible broker role installs what
`broker-config` prints, not a template of its own."""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning import revoke
from provisioning.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]
BOX = "19999-01"


def run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli(argv)
    return code, out.getvalue()


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ca"
    assert run(["init-ca", "--ca-dir", str(d)])[0] == 0
    add = ["registry", "add", "--ca-dir", str(d), "--commune-code", BOX[:5], "--commune-name", "Xã Một"]
    assert run([*add, "--province-code", "44", "--host", "10.44.99.10"])[0] == 0
    return d


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_web_certificate_names_the_box_and_chains_to_the_province_ca(ca_dir: Path, tmp_path: Path) -> None:
    box = tmp_path / "box"  # made "on the box": the key stays here
    base = ["--ca-dir", str(ca_dir)]
    csr = ["csr", *base, "--device-id", BOX, "--web", "--key", str(box / "web.key"), "--csr", str(box / "web.csr")]
    assert run(csr)[0] == 0
    code, out = run(["web-cert", *base, "--device-id", BOX, "--csr", str(box / "web.csr"), "--out",
                     str(tmp_path / "web"), "--ip", "192.168.1.20", "--json"])  # fmt: skip
    assert code == 0
    result = json.loads(out)
    cert = _cert(Path(result["cert"]))
    ca = _cert(ca_dir / "ca.crt")
    cert.verify_directly_issued_by(ca)  # signed by the province CA (raises otherwise)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"box-{BOX}"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [f"box-{BOX}", f"box-{BOX}.local"]
    ips = san.get_values_for_type(x509.IPAddress)
    assert ips == [ipaddress.ip_address("192.168.1.20"), ipaddress.ip_address("10.44.99.10")]  # + registry host
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 398  # what browsers accept
    key = serialization.load_pem_private_key((box / "web.key").read_bytes(), None)
    assert cert.public_key() == key.public_key()
    assert result["hosts"] == f"box-{BOX} box-{BOX}.local 192.168.1.20 10.44.99.10"

    # a CSR asking for another name, an unregistered box, a too long life: refused with one line, exit 2
    other = ["csr", *base, "--device-id", "19888-01", "--web", "--key", str(box / "o.key"), "--csr", str(box / "o.csr")]
    assert run(other)[0] == 0
    assert run(["web-cert", *base, "--device-id", BOX, "--csr", str(box / "o.csr"), "--out", str(tmp_path)])[0] == 2
    assert (
        run(["web-cert", *base, "--device-id", "19888-01", "--csr", str(box / "o.csr"), "--out", str(tmp_path)])[0] == 2
    )
    assert run(["web-cert", *base, "--device-id", BOX, "--csr", str(box / "web.csr"), "--out", str(tmp_path),
                "--days", "825"])[0] == 2  # fmt: skip

    # revocable like any other certificate of the CA
    assert run(["revoke", *base, "--serial", result["serial"], "--reason", "superseded"])[0] == 0
    assert run(["crl", *base, "--out", str(tmp_path / "crl.pem")])[0] == 0
    assert revoke.revoked_serials((tmp_path / "crl.pem").read_bytes()) == {result["serial"]: "superseded"}


def test_receiver_certificate_from_a_csr_or_a_new_key(ca_dir: Path, tmp_path: Path) -> None:
    base = ["--ca-dir", str(ca_dir)]
    rx = tmp_path / "receiver-host"
    assert (
        run(["csr", *base, "--receiver", "receiver-3", "--key", str(rx / "r.key"), "--csr", str(rx / "r.csr")])[0] == 0
    )
    code, out = run(["receiver-cert", *base, "--name", "receiver-3", "--csr", str(rx / "r.csr"), "--out",
                     str(tmp_path / "out"), "--json"])  # fmt: skip
    assert code == 0
    cert = _cert(Path(json.loads(out)["cert"]))
    cert.verify_directly_issued_by(_cert(ca_dir / "ca.crt"))
    assert cert.subject.rfc4514_string() == "CN=receiver-3"
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    # --new-key: the key is made in --out (0600) next to the certificate
    assert run(["receiver-cert", *base, "--name", "receiver-4", "--new-key", "--out", str(tmp_path / "out")])[0] == 0
    assert (tmp_path / "out" / "receiver-4.key").stat().st_mode & 0o077 == 0
    # a receiver may not be named like a box (it would be that box on the broker), nor get a box's CSR
    assert run(["csr", *base, "--receiver", "19999-02", "--key", str(rx / "x.key"), "--csr", str(rx / "x.csr")])[0] == 2
    assert (
        run(["receiver-cert", *base, "--name", "receiver-5", "--csr", str(rx / "r.csr"), "--out", str(tmp_path)])[0]
        == 2
    )
    assert run(["receiver-cert", *base, "--name", BOX, "--new-key", "--out", str(tmp_path)])[0] == 2


def _fenced_after(text: str, marker: str) -> str:
    """The first fenced block after the line containing `marker`."""
    at = text.index(marker)
    m = re.search(r"```\n(.*?)```", text[at:], re.S)
    assert m is not None, marker
    return m.group(1)


def test_protocol_doc_acls_are_what_broker_acl_prints(ca_dir: Path) -> None:
    doc = (ROOT / "docs" / "protocol.md").read_text()
    code, transfer = run(["broker-acl", "--ca-dir", str(ca_dir), "--receiver", "receiver-1"])
    assert code == 0
    assert _fenced_after(doc, "Transfer ACL") == transfer.rstrip("\n") + "\n"
    code, telemetry = run(["broker-acl", "--telemetry", "--ca-dir", str(ca_dir), "--receiver", "receiver-1"])
    assert code == 0
    assert _fenced_after(doc, "Telemetry ACL") == telemetry.rstrip("\n") + "\n"


def test_broker_config_has_crl_persistence_and_both_listeners() -> None:
    code, conf = run(["broker-config", "--conf-dir", "/etc/mosquitto/province"])
    assert code == 0
    lines = conf.splitlines()
    assert "persistence true" in lines and "persistence_location /var/lib/mosquitto/" in lines
    assert lines.count("crlfile /etc/mosquitto/province/crl.pem") == 2
    assert lines.count("use_username_as_clientid true") == 2 and lines.count("require_certificate true") == 2
    assert "listener 8883 0.0.0.0" in lines and "listener 8884 0.0.0.0" in lines
    assert "acl_file /etc/mosquitto/province/acl-telemetry" in lines
    assert "include_dir" not in conf  # the whole file: Debian's own persistence lines would be duplicates
    assert "crlfile" not in run(["broker-config", "--no-crl"])[1]


def test_ansible_broker_role_installs_what_broker_config_prints() -> None:
    role = ROOT / "ansible" / "roles" / "broker"
    assert not list(role.glob("templates/*.conf*"))  # no template of its own
    tasks = (role / "tasks" / "main.yml").read_text()
    assert "-m provisioning broker-config" in tasks
    assert "dest: /etc/mosquitto/mosquitto.conf" in tasks


def test_superseded_by_revokes_only_what_the_new_certificate_replaces(ca_dir: Path, tmp_path: Path) -> None:
    base = ["--ca-dir", str(ca_dir)]
    add = ["registry", "add", *base, "--commune-code", "19888", "--commune-name", "Xã Hai", "--province-code", "44"]
    assert run(add)[0] == 0

    def web(device_id: str, n: int) -> str:
        d = tmp_path / f"{device_id}-{n}"
        assert (
            run(["csr", *base, "--device-id", device_id, "--web", "--key", str(d / "k"), "--csr", str(d / "c")])[0] == 0
        )
        code, out = run(["web-cert", *base, "--device-id", device_id, "--csr", str(d / "c"), "--out", str(d), "--json"])
        assert code == 0
        serial: str = json.loads(out)["serial"]
        return serial

    first, orphan, other_box = web(BOX, 1), web(BOX, 2), web("19888-01", 1)
    new = web(BOX, 3)
    rx = tmp_path / "rx"
    code, out = run(["receiver-cert", *base, "--name", "receiver-1", "--new-key", "--out", str(rx), "--json"])
    receiver = json.loads(out)["serial"]
    assert run(["revoke", *base, "--superseded-by", new, "--reason", "key_compromise"])[0] == 2

    code, out = run(["revoke", *base, "--superseded-by", new, "--crl", str(tmp_path / "crl.pem"), "--json"])
    assert code == 0
    assert sorted(json.loads(out)["revoked"]) == sorted([first, orphan])  # the box's older web certificates only
    crl = revoke.revoked_serials((tmp_path / "crl.pem").read_bytes())
    assert crl == {first: "superseded", orphan: "superseded"}  # not the new one, another box's, a receiver's
    assert other_box not in crl and receiver not in crl and new not in crl
    # again: nothing more to revoke; a revoked certificate cannot supersede anything
    assert json.loads(run(["revoke", *base, "--superseded-by", new, "--json"])[1])["revoked"] == []
    assert run(["revoke", *base, "--superseded-by", first])[0] == 2
