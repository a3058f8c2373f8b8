"""Provisioning against a real mosquitto: two enrolled boxes are confined to their own topics, a revoked
box is refused by the broker's CRL check, and no certificate can take another client's id over (one box
posing as another box or as a receiver's connection); plus the CSR checks, the CRL contents and the
generated inventory."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from provisioning import enrol, registry, revoke
from provisioning.ca import Ca
from provisioning.cli import main as cli
from tests.mqtt import free_port, wait_for

A, B, C = "19999-01", "19888-01", "19777-01"


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA + registry made through the CLI, three boxes enrolled from CSRs made 'on the box', C revoked."""
    root = tmp_path_factory.mktemp("province")
    ca_dir = root / "ca"
    base = ["--ca-dir", str(ca_dir)]
    assert cli(["init-ca", *base]) == 0
    for code, name in ((A, "Xã Một"), (B, "Phường Hai"), (C, "Xã Ba")):
        assert cli(["registry", "add", *base, "--commune-code", code[:5], "--commune-name", name,
                    "--province-code", "44", "--host", f"10.44.{code[2:5]}.10"]) == 0  # fmt: skip
    paths: dict[str, Path] = {"root": root, "ca_dir": ca_dir}
    for dev in (A, B, C):
        box = root / "box" / dev  # the key is made here and never copied anywhere else
        assert (
            cli(["csr", *base, "--device-id", dev, "--key", str(box / "device.key"), "--csr", str(box / "device.csr")])
            == 0
        )
        assert (
            cli(["issue", *base, "--device-id", dev, "--csr", str(box / "device.csr"), "--out", str(root / "issued")])
            == 0
        )
        paths[dev] = box
    assert cli(["revoke", *base, "--device-id", C, "--reason", "key_compromise", "--crl", str(root / "crl.pem")]) == 0
    assert cli(["server-cert", *base, "--name", "broker", "--host", "localhost", "--host", "127.0.0.1",
                "--out", str(root / "server")]) == 0  # fmt: skip
    # the receiver's certificate from the CLI (key made here, as on the province server)
    assert cli(["receiver-cert", *base, "--name", "receiver-1", "--new-key", "--out", str(root / "server")]) == 0
    return paths


@dataclass(frozen=True)
class Ports:
    transfer: int
    telemetry: int


@pytest.fixture(scope="module")
def crl_broker(province: dict[str, Path]) -> Iterator[Ports]:
    from tests.conftest import need

    need("mosquitto")
    root = province["root"]
    ports = Ports(free_port(), free_port())
    # laid out as the Ansible broker role does: the files in one directory, the ACLs and the whole
    # mosquitto.conf printed by the CLI (one source for tests and the province)
    conf_dir = root / "broker"
    conf_dir.mkdir()
    for src, dest in (
        (province["ca_dir"] / "ca.crt", "ca.crt"),
        (root / "server" / "broker.crt", "server.crt"),
        (root / "server" / "broker.key", "server.key"),
        (root / "crl.pem", "crl.pem"),
    ):
        shutil.copy(src, conf_dir / dest)
    base = ["--ca-dir", str(province["ca_dir"]), "--receiver", "receiver-1"]
    (conf_dir / "acl").write_text(_cli_out(["broker-acl", *base]))
    (conf_dir / "acl-telemetry").write_text(_cli_out(["broker-acl", "--telemetry", *base]))
    conf = _cli_out(
        ["broker-config", "--conf-dir", str(conf_dir), "--data-dir", str(conf_dir), "--log-file",
         str(conf_dir / "broker.log"), "--pid-file", str(conf_dir / "mosquitto.pid"), "--bind", "127.0.0.1",
         "--port", str(ports.transfer), "--telemetry-port", str(ports.telemetry),
         *(["--run-as-root"] if os.geteuid() == 0 else [])]
    )  # fmt: skip
    assert "crlfile" in conf and "persistence true" in conf
    (conf_dir / "mosquitto.conf").write_text(conf)
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(conf_dir / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )

    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        for port in (ports.transfer, ports.telemetry):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) != 0:
                    return False
        return True

    wait_for(listening, 10, "mosquitto")
    yield ports
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)


def _cli_out(argv: list[str]) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli(argv) == 0
    return out.getvalue()


class Client:
    """A paho MQTT 5 client with a device's certificate; records CONNACK and received messages."""

    def __init__(self, name: str, cert: Path, key: Path, ca: Path, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.connected = threading.Event()
        self.closed = threading.Event()
        self.messages: list[str] = []
        self.puback: dict[int, int] = {}
        self.subacks: list[list[int]] = []
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key))
        c.on_connect = lambda _c, _u, _f, rc, _p: self.connected.set() if not rc.is_failure else self.closed.set()
        c.on_disconnect = lambda *_a: self.closed.set()
        c.on_message = lambda _c, _u, m: self.messages.append(m.topic)
        c.on_publish = lambda _c, _u, mid, rc, _p: self.puback.__setitem__(mid, rc.value)
        c.on_subscribe = lambda _c, _u, _mid, rcs, _p: self.subacks.append([r.value for r in rcs])
        self.c = c
        try:
            c.connect("localhost", port, 30)
        except OSError:  # the TLS handshake itself refused
            self.closed.set()
            return
        c.loop_start()

    def wait(self) -> bool:
        """True once connected, False once refused (bounded wait)."""
        wait_for(lambda: self.connected.is_set() or self.closed.is_set(), 15, "CONNACK or refusal")
        return self.connected.is_set() and not self.closed.is_set()

    def stop(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _client(province: dict[str, Path], name: str, port: int, client_id: str | None = None) -> Client:
    """A client with `name`'s certificate, asking for `client_id` (default: the name itself)."""
    root = province["root"]
    if name == "receiver-1":
        cert, key = root / "server" / "receiver-1.crt", root / "server" / "receiver-1.key"
    else:
        cert, key = root / "issued" / f"{name}.crt", province[name] / "device.key"
    return Client(client_id or name, cert, key, province["ca_dir"] / "ca.crt", port)


@pytest.mark.slow
def test_enrolled_boxes_are_confined_and_the_revoked_box_is_refused(
    province: dict[str, Path], crl_broker: Ports
) -> None:
    port = crl_broker.transfer
    receiver = _client(province, "receiver-1", port)
    assert receiver.wait()
    receiver.c.subscribe("devices/+/file-async/#", qos=1)
    a, b = _client(province, A, port), _client(province, B, port)
    assert a.wait() and b.wait()
    b.c.subscribe(f"devices/{A}/receipts", qos=1)  # B tries to read A's receipts
    b.c.subscribe(f"devices/{B}/receipts", qos=1)
    wait_for(lambda: len(receiver.subacks) == 1 and len(b.subacks) == 2, 10, "SUBACKs")

    own_a = a.c.publish(f"devices/{A}/file-async/f1/init", b"{}", qos=1)
    foreign_a = a.c.publish(f"devices/{B}/file-async/f2/init", b"{}", qos=1)
    own_b = b.c.publish(f"devices/{B}/file-async/f3/init", b"{}", qos=1)
    foreign_b = b.c.publish(f"devices/{A}/file-async/f4/init", b"{}", qos=1)
    for info in (own_a, foreign_a, own_b, foreign_b):
        info.wait_for_publish(10)
    wait_for(lambda: len(a.puback) == 2 and len(b.puback) == 2, 10, "PUBACKs")
    # MQTT 5 tells the publisher about the ACL denial: 135 = not authorized
    assert a.puback[own_a.mid] == 0 and b.puback[own_b.mid] == 0
    assert a.puback[foreign_a.mid] == 135 and b.puback[foreign_b.mid] == 135
    # the receiver sees each box's own upload and nothing written in the other box's name
    receiver.c.publish(f"devices/{A}/receipts", b"r", qos=1).wait_for_publish(10)
    receiver.c.publish(f"devices/{B}/receipts", b"r", qos=1).wait_for_publish(10)
    wait_for(lambda: len(receiver.messages) >= 2 and f"devices/{B}/receipts" in b.messages, 10, "deliveries")
    assert sorted(receiver.messages) == sorted([f"devices/{A}/file-async/f1/init", f"devices/{B}/file-async/f3/init"])
    assert b.messages == [f"devices/{B}/receipts"]  # A's receipt never reached B

    c = _client(province, C, port)
    assert c.wait() is False, "a revoked certificate must be refused"
    c_telemetry = _client(province, C, crl_broker.telemetry, f"{C}-telemetry")
    assert c_telemetry.wait() is False, "... on the telemetry listener too"
    log = (province["root"] / "broker" / "broker.log").read_text()
    assert "certificate verify failed" in log
    # ... and the reason is the CRL: OpenSSL with the same CA and CRL says "revoked" for C only
    ca, crl = province["ca_dir"] / "ca.crt", province["root"] / "crl.pem"
    for dev, expect in ((A, "OK"), (C, "certificate revoked")):
        cert = province["root"] / "issued" / f"{dev}.crt"
        res = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", ca, "-CRLfile", crl, cert],
                             capture_output=True, text=True, check=False)  # fmt: skip
        assert expect in res.stdout + res.stderr
    for cl in (receiver, a, b, c, c_telemetry):
        cl.stop()


@pytest.mark.slow
def test_no_certificate_can_take_another_clients_id(province: dict[str, Path], crl_broker: Ports) -> None:
    """Box B and receiver-1 each hold two connections with one certificate (outbox + health publisher,
    package receiver + telemetry ingest). Box A's certificate asking for any of their client ids gets a
    connection of its own (its CN, or `CN=...` on the telemetry listener) and disconnects nobody."""
    transfer, telemetry = crl_broker.transfer, crl_broker.telemetry
    real = {
        "receiver-1": _client(province, "receiver-1", transfer),
        "receiver-1-telemetry": _client(province, "receiver-1", telemetry, "receiver-1-telemetry"),
        B: _client(province, B, transfer),
        f"{B}-telemetry": _client(province, B, telemetry, f"{B}-telemetry"),
    }
    assert all(c.wait() for c in real.values()), "several connections per certificate must work"

    def attack(port: int, wanted: str) -> Client:
        c = _client(province, A, port, wanted)
        wait_for(lambda: c.connected.is_set() or c.closed.is_set(), 15, "CONNACK")
        assert c.connected.is_set(), f"A asking for {wanted!r} was refused outright"
        return c

    on_transfer = [attack(transfer, wanted) for wanted in (B, "receiver-1", f"{B}-telemetry")]
    on_telemetry = [attack(telemetry, wanted) for wanted in (f"{B}-telemetry", "receiver-1-telemetry", B, f"CN={B}")]
    attacks = on_transfer + on_telemetry
    time.sleep(1.0)  # a takeover disconnects the old client at once: give it every chance to show
    dropped = [name for name, c in real.items() if c.closed.is_set()]
    assert dropped == [], f"taken over: {dropped}"
    # whatever A asked for, the broker made it A (transfer) or CN=A (telemetry), so A's connections only
    # ever take over each other (paho reconnects them, and they keep doing so: a certificate per connection)
    log = (province["root"] / "broker" / "broker.log").read_text()
    assert log.count(f" as {A} (") >= len(on_transfer) and log.count(f" as CN={A} (") >= len(on_telemetry)
    assert f"Client {A} already connected" in log
    for victim in (B, f"CN={B}", "receiver-1", "CN=receiver-1"):
        assert f"Client {victim} already connected" not in log

    for c in attacks:
        c.stop()

    # the telemetry listener confines each box to its own status and telemetry
    a_tm = _client(province, A, telemetry, f"{A}-telemetry")
    assert a_tm.wait()
    own = a_tm.c.publish(f"devices/{A}/telemetry", b"{}", qos=1)
    foreign = a_tm.c.publish(f"devices/{B}/status", b"{}", qos=1)
    for info in (own, foreign):
        info.wait_for_publish(10)
    wait_for(lambda: len(a_tm.puback) == 2, 10, "PUBACKs")
    assert a_tm.puback[own.mid] in (0, 16)  # accepted (16: accepted, no subscriber yet)
    assert a_tm.puback[foreign.mid] == 135  # not authorized
    assert not any(c.closed.is_set() for c in real.values())
    for c in (*real.values(), a_tm):
        c.stop()


def test_the_telemetry_acl_names_every_registered_box(province: dict[str, Path]) -> None:
    """`broker-acl --telemetry` from the registry (what the broker role installs as acl-telemetry)."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli(["broker-acl", "--telemetry", "--ca-dir", str(province["ca_dir"]), "--receiver", "receiver-1"]) == 0
    text = out.getvalue()
    for dev in (A, B, C):
        assert f"user CN={dev}\ntopic write devices/{dev}/status\ntopic write devices/{dev}/telemetry\n" in text
    assert "user CN=receiver-1\ntopic read devices/+/status\n" in text
    assert "pattern" not in text  # a subject username never fits a pattern: every rule names its box


def test_crl_lists_only_the_revoked_certificate(province: dict[str, Path]) -> None:
    with registry.open_registry(province["ca_dir"] / "registry.db") as con:
        serial_c = registry.certificates(con, C)[0].serial
        serial_a = registry.get_device(con, A).cert_serial
        assert registry.get_device(con, C).cert_serial is None  # revoked: no current certificate
    listed = revoke.revoked_serials((province["root"] / "crl.pem").read_bytes())
    assert listed == {serial_c: "key_compromise"}
    assert serial_a not in listed
    crl = x509.load_pem_x509_crl((province["root"] / "crl.pem").read_bytes())
    ca_cert = x509.load_pem_x509_certificate((province["ca_dir"] / "ca.crt").read_bytes())
    assert crl.is_signature_valid(ca_cert.public_key())  # type: ignore[arg-type]


def test_issued_certificate_is_for_the_box_key_with_cn_device_id(province: dict[str, Path]) -> None:
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate((province["root"] / "issued" / f"{A}.crt").read_bytes())
    key = serialization.load_pem_private_key((province[A] / "device.key").read_bytes(), None)
    assert cert.public_key() == key.public_key()
    assert cert.subject.rfc4514_string() == f"CN={A}"
    assert (province[A] / "device.key").stat().st_mode & 0o077 == 0


def test_csr_for_another_device_or_unregistered_device_is_refused(province: dict[str, Path], tmp_path: Path) -> None:
    ca = Ca(province["ca_dir"] / "ca.crt", province["ca_dir"] / "ca.key")
    enrol.make_key_and_csr(A, tmp_path / "k", tmp_path / "a.csr")
    with pytest.raises(enrol.EnrolError, match="expected '19888-01'"):
        enrol.sign_csr(ca, (tmp_path / "a.csr").read_bytes(), B)
    enrol.make_key_and_csr("19666-01", tmp_path / "k2", tmp_path / "x.csr")
    with registry.open_registry(province["ca_dir"] / "registry.db") as con, pytest.raises(registry.RegistryError):
        enrol.enrol(ca, con, (tmp_path / "x.csr").read_bytes(), "19666-01", tmp_path)
    with pytest.raises(enrol.EnrolError, match="exists"):
        enrol.make_key_and_csr(A, tmp_path / "k", tmp_path / "again.csr")
    assert cli(["issue", "--ca-dir", str(province["ca_dir"]), "--device-id", B, "--csr", str(tmp_path / "a.csr"),
                "--out", str(tmp_path)]) == 2  # fmt: skip


def test_renew_with_revoke_previous_supersedes_the_old_certificate(province: dict[str, Path], tmp_path: Path) -> None:
    base = ["--ca-dir", str(province["ca_dir"])]
    with registry.open_registry(province["ca_dir"] / "registry.db") as con:
        old = registry.get_device(con, B).cert_serial
    enrol.make_key_and_csr(B, tmp_path / "new.key", tmp_path / "new.csr")
    assert cli(["renew", *base, "--device-id", B, "--csr", str(tmp_path / "new.csr"), "--out", str(tmp_path),
                "--revoke-previous"]) == 0  # fmt: skip
    with registry.open_registry(province["ca_dir"] / "registry.db") as con:
        now = registry.get_device(con, B).cert_serial
        assert now is not None and now != old
        assert registry.certificate(con, str(old)).reason == "superseded"


def test_inventory_groups_province_then_commune(province: dict[str, Path]) -> None:
    out = province["root"] / "inventory" / "registry.yml"
    assert cli(["inventory", "--ca-dir", str(province["ca_dir"]), "--out", str(out),
                "--province-name", "44=Quảng Trị"]) == 0  # fmt: skip
    inv = yaml.safe_load(out.read_text())
    prov = inv["all"]["children"]["appliances"]["children"]["province_44"]
    assert prov["vars"] == {"province_code": "44", "province_name": "Quảng Trị"}
    communes = prov["children"]
    assert set(communes) == {"commune_19999", "commune_19888", "commune_19777"}
    host = communes["commune_19999"]["hosts"][A]
    assert host["ansible_host"] == "10.44.999.10" and host["device_id"] == A
    assert communes["commune_19999"]["vars"]["commune_code"] == "19999"  # a string, leading zeros kept
    assert "device_cert_serial" not in communes["commune_19777"]["hosts"][C]  # revoked: no certificate
